""".ci/ensure-tools: installs missing Debian tools when it can, else says so in one line."""

from __future__ import annotations

import os
import subprocess

from tests.support.deploy import ROOT

SCRIPT = ROOT / ".ci" / "ensure-tools"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_TOOL_INSTALL": "1"}
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )


class TestEnsureTools:
    def test_present_tools_print_nothing(self) -> None:
        """When every command is on PATH nothing is installed or printed."""
        result = run("sh=dash")
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    def test_a_skipped_install_is_one_line_saying_how(self) -> None:
        """A tool it may not install is named on one line with the package to install."""
        result = run("sh=dash", "no-such-tool-16=no-such-package-16")
        assert result.returncode == 0
        assert result.stderr.count("\n") == 1
        assert "no-such-tool-16" in result.stderr
        assert "apt-get install no-such-package-16" in result.stderr

    def test_require_fails_when_a_tool_is_missing(self) -> None:
        """--require (the container smoke) exits 1 when it cannot get a tool."""
        assert run("--require", "no-such-tool-16=no-such-package-16").returncode == 1
