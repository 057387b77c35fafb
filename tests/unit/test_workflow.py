"""The GitHub Actions workflow passes actionlint and runs the same recipes as .ci/run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.deploy import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
ACTIONLINT = Path(sys.executable).parent / "actionlint"
# owner/repo[/path]@<40 hex digits> # <tag>: a commit cannot be moved the way a tag can.
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
TAG_COMMENT = re.compile(r"uses: \S+ # v\d+\.\d+\.\d+$")


def run_actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def steps() -> list[dict[str, Any]]:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    return [step for job in jobs.values() for step in job["steps"]]


class TestWorkflow:
    def test_actionlint_accepts_it(self) -> None:
        """actionlint (expressions, job graph, action inputs, runner labels) finds nothing."""
        result = run_actionlint(WORKFLOW)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_actionlint_is_not_vacuous(self, tmp_path: Path) -> None:
        """A broken expression is reported."""
        broken = tmp_path / "broken.yml"
        broken.write_text(WORKFLOW.read_text().replace("${{ github.ref }}", "${{ github.reff }}"))
        assert run_actionlint(broken).returncode != 0

    def test_every_action_is_pinned_by_commit_sha(self) -> None:
        """Each `uses:` names a full 40-hex commit, and its line names the tag in a comment."""
        uses = [step["uses"] for step in steps() if "uses" in step]
        assert uses
        for ref in uses:
            assert PINNED.match(ref), ref
        lines = [line for line in WORKFLOW.read_text().splitlines() if "uses:" in line]
        assert len(lines) == len(uses)
        for line in lines:
            assert TAG_COMMENT.search(line), line

    def test_runs_the_ci_recipes(self) -> None:
        """Every recipe .ci/run runs is a step, and so are the short profiles."""
        commands = " ".join(str(step.get("run", "")) for step in steps())
        for line in (ROOT / ".ci" / "run").read_text().splitlines():
            if line.startswith("./just "):
                assert line in commands, line
        for recipe in ("./just chaos", "./just bench", "test_consumer_fuzz.py"):
            assert recipe in commands

    def test_reports_are_uploaded(self) -> None:
        """The test report, the coverage report and the benchmark figures are artifacts."""
        uploads = [s["with"]["path"] for s in steps() if "upload-artifact" in s.get("uses", "")]
        assert "reports/" in uploads
        assert any("bench" in path for path in uploads)
        recipe = (ROOT / "justfile").read_text()
        assert "--cov-report=xml:reports/coverage.xml" in recipe
        assert "--junitxml=reports/junit.xml" in recipe
