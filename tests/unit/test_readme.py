"""The README's configuration table stays true to the settings tree (reco/settings/)."""

from __future__ import annotations

import re
from pathlib import Path

from reco.settings import KNOBS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
ROWS = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", README, flags=re.MULTILINE))


class TestConfigurationTable:
    def test_every_setting_has_a_row(self) -> None:
        """Each APP_ENV/RECO_* variable has a row, and no row is for a setting that is gone."""
        expected = {knob.env for knob in KNOBS}
        assert expected - ROWS.keys() == set()
        assert ROWS.keys() - expected == set()

    def test_defaults_match(self) -> None:
        """A row's default is the setting's default (numbers and words compared as text)."""
        for knob in KNOBS:
            default = knob.field.default
            if not isinstance(default, str | int | float) or default in ("", ()):
                continue  # empty, None or computed: described in words
            shown = ROWS[knob.env].strip().strip("`")
            value = getattr(default, "value", default)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            assert shown == str(value).lower() or shown == str(value), knob.env
