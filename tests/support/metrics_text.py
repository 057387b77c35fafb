"""Read the Prometheus text exposition of GET /metrics: series and their values."""

from __future__ import annotations

import re

SAMPLE = re.compile(r"^(?P<series>(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?) (?P<value>\S+)")


def samples(text: str) -> dict[str, float]:
    """Every sample line as ``{series (name and labels): value}``; comments skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            out[match["series"]] = float(match["value"])
    return out


def total(text: str, name: str) -> float:
    """The sum of every series of the metric ``name`` (0 when it has none)."""
    return sum(value for series, value in samples(text).items()
               if series == name or series.startswith(name + "{"))  # fmt: skip
