"""Fixtures shared by the integration tests of one component or another."""

from __future__ import annotations

import pytest

from reco.engine import ingest
from tests.integration.consumer_harness import counting_apply


@pytest.fixture
def count_applications(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the engine's apply_events with the counting stand-in (consumer tests)."""
    monkeypatch.setattr(ingest, "apply_events", counting_apply)
