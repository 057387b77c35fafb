"""The fault x invariant table: printed, and written to docs/operations/chaos.md."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from tests.chaos.invariants import Check

BEGIN = "<!-- chaos-table:begin -->"
END = "<!-- chaos-table:end -->"


@attrs.define
class Row:
    name: str
    fault: str
    checks: dict[str, Check]
    figures: list[str]
    violations: list[str]
    seconds: float

    @property
    def all_violations(self) -> list[str]:
        found = [f"{name}: {v}" for name, c in self.checks.items() for v in c.violations]
        return found + [f"fault: {v}" for v in self.violations]

    @property
    def failed(self) -> bool:
        return bool(self.all_violations)


def server_errors(
    records: Sequence[dict[str, Any]], drain: tuple[str, float, float] | None
) -> Check:
    """5xx answers (a figure: PostgreSQL outages answer 503 by design); while a SIGTERMed
    instance drained, none is allowed."""
    errors = [r for r in records if isinstance(r.get("status"), int) and r["status"] >= 500]
    if drain is None:
        return Check(str(len(errors)))
    name, began, ended = drain
    during = [r for r in errors if r.get("instance") == name
              and began <= r.get("done", r.get("ack", r.get("sent", 0))) <= ended + 0.5]  # fmt: skip
    check = Check(f"{len(errors)} ({len(during)} draining)")
    if during:
        check.violations.append(f"{len(during)} 5xx answered by {name} while draining")
    return check


def line(row: Row) -> str:
    verdict = "FAIL" if row.failed else "PASS"
    figures = "; ".join(f"{k} {c.figures}" for k, c in row.checks.items())
    text = (
        f"{row.name:<28} {verdict}  {row.seconds:5.1f} s  {'; '.join(row.figures)}\n    {figures}"
    )
    for violation in row.all_violations:
        text += f"\n    ! {violation}"
    return text


COLUMNS = ["events", "aggregates", "outbox", "impressions", "dead letters", "recovery s", "5xx"]


def table(rows: Sequence[Row], command: str, wall: float, instances: int) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"`{command}` on {when}, {instances} instances, wall time {wall:.0f} s:", "",
           "| scenario | fault | " + " | ".join(COLUMNS) + " | verdict |",
           "|---" * (len(COLUMNS) + 3) + "|"]  # fmt: skip
    for row in rows:
        cells = [row.checks[c].figures for c in COLUMNS]
        verdict = "FAIL" if row.failed else "PASS"
        fault = row.fault + (f" ({'; '.join(row.figures)})" if row.figures else "")
        out.append(f"| {row.name} | {fault} | " + " | ".join(cells) + f" | {verdict} |")
    failures = [f"- {row.name}: {v}" for row in rows for v in row.all_violations]
    if failures:
        out += ["", "Violations:", "", *failures]
    return "\n".join(out)


def write_docs(path: Path, text: str) -> None:
    """Replace what lies between the table markers in ``path``."""
    doc = path.read_text()
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
