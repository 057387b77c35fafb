"""Readiness: named checks that components flip, read by ``GET /readyz``.

A check is ``ok`` or failing with a short detail. Readiness answers one
question: can this instance serve HTTP traffic? So it needs only the
**critical** checks (``CRITICAL``: the database; every endpoint but the
probes needs PostgreSQL, and nothing else) to be ok, and is false from the
moment shutdown begins. The other checks (the consumer's broker connection
and progress, the outbox age, ...) describe work that does not serve
requests: when one fails the instance is ``degraded``, still ready, since
taking every instance out of the Service over a Kafka outage would stop the
reads too. They are reported in the body, in ``reco_api_check_status`` and
through alerts. ``strict`` readiness is the old conjunction of every check,
for operators (``GET /readyz?strict=1``).

Body (``snapshot()``): ``{"status": "ready" | "degraded" | "not ready",
"checks": {name: {"status": "ok" | "degraded" | "failing", "critical": bool,
"detail": str, ...data}}}``; a failing critical check is ``failing``, a
failing other one ``degraded``.
"""

from __future__ import annotations

from typing import Any

import attrs

from reco.observability import metrics

# The checks without which this instance cannot answer requests.
CRITICAL = frozenset({"database"})


@attrs.frozen
class CheckState:
    ok: bool
    detail: str = ""
    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class Readiness:
    """The one registry of readiness checks for this process."""

    _checks: dict[str, CheckState] = attrs.field(factory=dict)
    _shutting_down: bool = False
    critical: frozenset[str] = CRITICAL

    def __attrs_post_init__(self) -> None:
        self._publish()

    def set(self, name: str, ok: bool, detail: str = "", **data: Any) -> None:
        self._checks[name] = CheckState(ok, detail, data)
        metrics.check_status.set({"check": name}, 1 if ok else 0)
        self._publish()

    def get(self, name: str) -> CheckState | None:
        return self._checks.get(name)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @shutting_down.setter
    def shutting_down(self, value: bool) -> None:
        self._shutting_down = value
        self._publish()

    @property
    def ready(self) -> bool:
        """This instance can serve HTTP: every critical check ok, not shutting down."""
        return not self._shutting_down and all(
            c.ok for name, c in self._checks.items() if name in self.critical
        )

    @property
    def strict_ready(self) -> bool:
        """Every check ok, not shutting down (``/readyz?strict=1``)."""
        return not self._shutting_down and all(c.ok for c in self._checks.values())

    @property
    def status(self) -> str:
        if not self.ready:
            return "not ready"
        return "ready" if self.strict_ready else "degraded"

    def snapshot(self) -> dict[str, Any]:
        checks = {name: self._describe(name, c) for name, c in sorted(self._checks.items())}
        if self._shutting_down:
            checks["shutdown"] = {"status": "failing", "critical": True, "detail": "shutting down"}
        return {"status": self.status, "checks": checks}

    def _describe(self, name: str, check: CheckState) -> dict[str, Any]:
        critical = name in self.critical
        status = "ok" if check.ok else ("failing" if critical else "degraded")
        return {"status": status, "critical": critical, "detail": check.detail, **check.data}

    def _publish(self) -> None:
        metrics.api_ready.set({}, 1 if self.ready else 0)
