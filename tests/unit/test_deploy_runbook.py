"""docs/runbook.md stays complete: every setting in the environment matrix."""

from __future__ import annotations

import re

import attrs

from reco.settings import Settings, env_name
from tests.support.deploy import ROOT

RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()


class TestEnvironmentMatrix:
    def test_every_setting_has_a_row(self) -> None:
        """Each APP_ENV/RECO_* variable of reco/settings.py has a row in the matrix."""
        rows = set(re.findall(r"^\| `([A-Z_]+)`", RUNBOOK, flags=re.MULTILINE))
        expected = {env_name(field.name) for field in attrs.fields(Settings)}
        assert expected - rows == set()
        assert rows - expected == set(), "rows for settings that no longer exist"

    def test_secrets_are_marked_as_files(self) -> None:
        """The secret settings' rows say they may be given as *_FILE."""
        for field in attrs.fields(Settings):
            if field.metadata.get("secret"):
                assert f"| `{env_name(field.name)}` (`_FILE`)" in RUNBOOK
