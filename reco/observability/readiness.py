"""Readiness: named checks that components flip, read by ``GET /readyz``.

A check is ``ok`` or failing with a short detail. Readiness is the conjunction
of all checks, and false from the moment shutdown begins.
"""

from __future__ import annotations

from typing import Any

import attrs

from reco.observability import metrics


@attrs.frozen
class CheckState:
    ok: bool
    detail: str = ""
    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class Readiness:
    """The one registry of readiness checks for this process."""

    _checks: dict[str, CheckState] = attrs.field(factory=dict)
    shutting_down: bool = False

    def set(self, name: str, ok: bool, detail: str = "", **data: Any) -> None:
        self._checks[name] = CheckState(ok, detail, data)
        metrics.check_status.set({"check": name}, 1 if ok else 0)

    def get(self, name: str) -> CheckState | None:
        return self._checks.get(name)

    @property
    def ready(self) -> bool:
        return not self.shutting_down and all(c.ok for c in self._checks.values())

    def snapshot(self) -> dict[str, Any]:
        checks = {
            name: {"status": "ok" if c.ok else "failing", "detail": c.detail, **c.data}
            for name, c in sorted(self._checks.items())
        }
        if self.shutting_down:
            checks["shutdown"] = {"status": "failing", "detail": "shutting down"}
        return {"status": "ready" if self.ready else "not ready", "checks": checks}
