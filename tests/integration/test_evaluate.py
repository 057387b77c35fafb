"""`reco evaluate` end to end on a small generated ratings file (embedded PostgreSQL)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from reco.evaluation import cli
from reco.settings import Settings

pytestmark = pytest.mark.integration


def generate(tmp_path: Path) -> Path:
    """40 users watching runs of consecutive items: sequence matters, like real data."""
    rng = random.Random(3)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for user in range(40):
        start, t = rng.randrange(30), 1_000_000 + user * 50
        for step in range(10):
            lines.append(f"{user}\t{(start + step) % 30}\t4\t{t + step * 60}")
    path = tmp_path / "tiny.inter"
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "tiny.item").write_text(
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
        + "".join(f"{i}\tMovie {i}\tDrama\n" for i in range(30))
    )
    return path


def test_evaluate_prints_the_service_next_to_the_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    """Exit 0; a row for the service and one per baseline (a figure or why it did not run)."""
    status = cli.run(settings, generate(tmp_path), None, embedded=False)
    out, err = capsys.readouterr()
    assert status == 0, err
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    service = next(line for name, line in rows.items() if name.startswith("reco service"))
    recall = float(service.split()[-5])
    assert recall > 0.5  # sequences are easy: the next items follow the last ones
    assert "most popular" in rows
    assert any(name.startswith("implicit ALS") for name in rows)
    assert "replay: 320/320" in err


def test_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    assert cli.run(Settings(), tmp_path / "missing.inter", None) == cli.EXIT_USAGE
