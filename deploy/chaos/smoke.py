"""Chaos smoke: break reco's dependencies on the embedded stack and watch it recover.

Run by hand (``just chaos``), never in CI. It starts the embedded PostgreSQL and the
Tansu broker (``reco_dev.devstack``), runs ``reco serve`` against them as child processes on
loopback ports, then injects one fault at a time and checks what an orchestrator would:

- ``postgres-paused``: SIGSTOP every PostgreSQL process for ``--pause`` seconds. /readyz
  must turn 503 and /healthz stay 200 (no restart for a dependency outage); after SIGCONT,
  /readyz must be 200 again.
- ``broker-killed``: SIGKILL the broker, keep it down ``--pause`` seconds (at least 8), start it again
  on the same port. The process must stay alive with /healthz 200 and /readyz 200 throughout
  (a broker outage degrades, it does not take the instance out of the Service), while
  /readyz?strict=1 turns 503 (the consumer cannot reach the broker); strictly ready again after.
- ``relay-leader-killed``: with a second instance running, SIGKILL the one whose
  ``reco_outbox_leader`` is 1; the survivor must take the lead. Skipped while reco has no
  relay (no ``reco_outbox_leader`` series).
- ``sigkill-restart``: SIGKILL reco and start it again: it must become ready (migrations and
  locks survive a crash).
- ``sigterm``: SIGTERM must end reco with exit status 0 within the shutdown timeout.

Every wait has a deadline; the script exits 0 when no check failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from reco_dev.devstack.broker import EmbeddedBroker
from reco_dev.devstack.ports import free_port
from reco_dev.devstack.postgres import EmbeddedPostgres
from reco_dev.devstack.stack import DEV_DATABASE, embedded_stack

SHUTDOWN_TIMEOUT = 5.0
POLL = 0.1


class Failed(Exception):
    """A chaos expectation did not hold."""


def http_status(url: str) -> int | None:
    """The status of GET ``url``, or None when nothing answers within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wait_until(what: str, condition: Callable[[], bool], deadline: float) -> float:
    """Poll ``condition`` until true; return the seconds it took, or raise Failed."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > deadline:
            raise Failed(f"{what}: not within {deadline:g} s")
        time.sleep(POLL)
    return time.monotonic() - began


class Instance:
    """One ``reco serve`` child process on a free loopback port."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, "RECO_HTTP_BIND": f"127.0.0.1:{self.port}"}
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def status(self, path: str) -> int | None:
        return http_status(self.url(path))

    def start(self, deadline: float) -> float:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reco", "serve"], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return wait_until(f"{self.name} ready", lambda: self.status("/readyz") == 200, deadline)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def is_leader(self) -> bool | None:
        """True/False from ``reco_outbox_leader``; None when the metric is absent."""
        try:
            with urllib.request.urlopen(self.url("/metrics"), timeout=1.0) as response:
                text = response.read().decode()
        except OSError:
            return None
        values = [line.split()[-1] for line in text.splitlines()
                  if line.startswith("reco_outbox_leader")]  # fmt: skip
        return None if not values else float(values[0]) == 1.0

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(SHUTDOWN_TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


BROKER_OUTAGE = 8.0  # seconds: longer than the request timeout the service is given


def service_env(postgres: EmbeddedPostgres, broker: EmbeddedBroker) -> dict[str, str]:
    """Settings for chaos: real stack, small intervals, migrations on start."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("RECO_") and k != "APP_ENV"}
    return {
        **keep, "APP_ENV": "development", "RECO_LOG_LEVEL": "INFO",
        "RECO_DATABASE_URL": postgres.url(DEV_DATABASE), "RECO_KAFKA_BOOTSTRAP": broker.bootstrap,
        "RECO_MIGRATE_ON_START": "true", "RECO_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
        "RECO_DB_HEALTH_INTERVAL": "0.2", "RECO_DB_HEALTH_TIMEOUT": "0.5",
        "RECO_DB_ACQUIRE_TIMEOUT": "0.5", "RECO_KAFKA_RETRY_INITIAL": "0.05",
        "RECO_KAFKA_RETRY_MAX": "0.5", "RECO_RELAY_LEADER_RETRY": "0.2",
        "RECO_KAFKA_REQUEST_TIMEOUT": "5", "RECO_CONSUMER_LAG_INTERVAL": "0.5",
    }  # fmt: skip


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])  # the field after the state


def postgres_processes(postmaster: int) -> list[int]:
    """The postmaster and its children (Linux /proc).

    Every PostgreSQL child calls setsid(), so signalling the postmaster's process group
    (what ``EmbeddedPostgres.pause`` does) leaves the backends running: freeze each one.
    """
    children = [int(p.name) for p in Path("/proc").iterdir()
                if p.name.isdigit() and _parent(int(p.name)) == postmaster]  # fmt: skip
    return [postmaster, *children]


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def postgres_paused(reco: Instance, postgres: EmbeddedPostgres, pause: float, wait: float) -> str:
    frozen = postgres_processes(postgres.pid)
    signal_all(frozen, signal.SIGSTOP)
    try:
        down = wait_until("/readyz 503 with PostgreSQL paused",
                          lambda: reco.status("/readyz") == 503, wait)  # fmt: skip
        _hold(reco, pause)
    finally:
        signal_all(frozen, signal.SIGCONT)
    up = wait_until("/readyz 200 after SIGCONT", lambda: reco.status("/readyz") == 200, wait)
    return f"not ready after {down:.1f} s, ready again {up:.1f} s after resume"


def broker_killed(reco: Instance, broker: EmbeddedBroker, pause: float, wait: float) -> str:
    assert broker.process is not None
    broker.process.kill()
    broker.process.wait(5)
    flipped = False
    # The consumer's broker probe fails after RECO_KAFKA_REQUEST_TIMEOUT: outlast it.
    ends = time.monotonic() + max(pause, BROKER_OUTAGE)
    while time.monotonic() < ends:
        if reco.status("/readyz") != 200:
            raise Failed("/readyz left 200 while only the broker was down")
        flipped |= reco.status("/readyz?strict=1") == 503
        _hold(reco, POLL)
    broker.start()
    up = wait_until("/readyz?strict=1 200 after the broker restart",
                    lambda: reco.status("/readyz?strict=1") == 200, wait)  # fmt: skip
    if not flipped:
        raise Failed("/readyz?strict=1 stayed 200 while the broker was down")
    return f"/readyz stayed 200, strict 503 while down; strict 200 {up:.1f} s after restart"


def _hold(reco: Instance, seconds: float) -> None:
    """Wait ``seconds`` while checking liveness holds and the process lives."""
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if not reco.alive:
            raise Failed(f"{reco.name} exited (status {reco.process and reco.process.returncode})")
        if reco.status("/healthz") != 200:
            raise Failed(f"{reco.name}: /healthz failed during a dependency outage")
        time.sleep(POLL)


def relay_leader_killed(first: Instance, second: Instance, wait: float) -> str:
    second.start(wait)
    if first.is_leader() is None:
        second.stop()
        raise Skipped("no reco_outbox_leader series (the relay is not in this build)")
    instances = (first, second)
    wait_until("one relay leader", lambda: sum(bool(i.is_leader()) for i in instances) == 1, wait)
    leader = next(i for i in instances if i.is_leader())
    survivor = second if leader is first else first
    leader.signal(signal.SIGKILL)
    took = wait_until("the survivor leads", lambda: survivor.is_leader() is True, wait)
    leader.start(wait)  # back to two instances; the caller stops the extra one
    return f"{leader.name} killed; {survivor.name} took the lead in {took:.1f} s"


class Skipped(Exception):
    """A scenario that does not apply to this build."""


def sigkill_restart(reco: Instance, wait: float) -> str:
    reco.signal(signal.SIGKILL)
    assert reco.process is not None
    reco.process.wait(5)
    took = reco.start(wait)
    return f"ready {took:.1f} s after a restart from SIGKILL"


def sigterm(reco: Instance) -> str:
    began = time.monotonic()
    status = reco.stop()
    took = time.monotonic() - began
    if status != 0:
        raise Failed(f"exit status {status} after SIGTERM (expected 0)")
    if took > SHUTDOWN_TIMEOUT + 1:
        raise Failed(f"took {took:.1f} s to stop (shutdown timeout {SHUTDOWN_TIMEOUT:g} s)")
    return f"exit 0 in {took:.1f} s"


def run_scenario(name: str, action: Callable[[], str], results: list[tuple[str, str]]) -> None:
    try:
        outcome = f"PASS  {action()}"
    except Skipped as exc:
        outcome = f"SKIP  {exc}"
    except Failed as exc:
        outcome = f"FAIL  {exc}"
    results.append((name, outcome))
    print(f"{name:<22} {outcome}", flush=True)


@contextlib.contextmanager
def stack(root: Path, attempts: int = 3) -> Iterator[tuple[EmbeddedPostgres, EmbeddedBroker]]:
    """The embedded stack; start-up is retried because pg_isready can report "rejecting
    connections" (exit 1) at once while PostgreSQL is still starting."""
    for attempt in range(1, attempts + 1):
        with contextlib.ExitStack() as started:
            try:
                postgres, broker = started.enter_context(
                    embedded_stack(root / f"stack-{attempt}", durable=False)
                )
            except subprocess.CalledProcessError:
                if attempt == attempts:
                    raise
                continue
            assert broker is not None
            yield postgres, broker
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pause", type=float, default=3.0, help="seconds each fault lasts")
    parser.add_argument("--wait", type=float, default=30.0, help="deadline for each check")
    args = parser.parse_args(argv)
    results: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="reco-chaos-") as tmp, stack(Path(tmp)) as (pg, kafka):
        env = service_env(pg, kafka)
        first, second = Instance("reco-1", env, Path(tmp)), Instance("reco-2", env, Path(tmp))
        try:
            print(f"reco-1 ready in {first.start(args.wait):.1f} s (logs in {tmp})", flush=True)
            run_scenario("postgres-paused", lambda: postgres_paused(first, pg, args.pause, args.wait), results)  # fmt: skip
            run_scenario("broker-killed", lambda: broker_killed(first, kafka, args.pause, args.wait), results)  # fmt: skip
            run_scenario("relay-leader-killed", lambda: relay_leader_killed(first, second, args.wait), results)  # fmt: skip
            second.stop()
            run_scenario("sigkill-restart", lambda: sigkill_restart(first, args.wait), results)
            run_scenario("sigterm", lambda: sigterm(first), results)
        finally:
            for instance in (first, second):
                instance.stop()
    return 1 if any(outcome.startswith("FAIL") for _, outcome in results) else 0


if __name__ == "__main__":
    sys.exit(main())
