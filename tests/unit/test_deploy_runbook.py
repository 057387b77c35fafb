"""docs/runbook.md stays complete: every setting in the environment matrix."""

from __future__ import annotations

import re

from reco.settings import KNOBS
from tests.support.deploy import ROOT

RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()


class TestEnvironmentMatrix:
    def test_every_setting_has_a_row(self) -> None:
        """Each APP_ENV/RECO_* variable of the settings tree has a row in the matrix."""
        rows = set(re.findall(r"^\| `([A-Z_]+)`", RUNBOOK, flags=re.MULTILINE))
        expected = {knob.env for knob in KNOBS}
        assert expected - rows == set()
        assert rows - expected == set(), "rows for settings that no longer exist"

    def test_secrets_are_marked_as_files(self) -> None:
        """The secret settings' rows say they may be given as *_FILE."""
        for knob in KNOBS:
            if knob.secret:
                assert f"| `{knob.env}` (`_FILE`)" in RUNBOOK
