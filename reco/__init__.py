"""reco: a recommendation service (per-user, similar-item and popular lists)."""

from __future__ import annotations

__version__ = "0.1.0"
