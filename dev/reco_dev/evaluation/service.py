"""Run the service for an evaluation: ``python -m reco serve`` as a child process.

A child process (rather than the service in-process) is what production
runs: its own event loop and its own settings from ``RECO_*`` variables, the
consumer and relay on, reached only over HTTP and Kafka. Its log goes to a
file whose tail is shown when it fails to become ready.
"""

from __future__ import annotations

import enum
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import attrs

from reco.settings import Settings, env_name
from reco_dev.evaluation.client import Client

READY_POLL = 0.05


class ServiceFailed(RuntimeError):
    """The service process exited or never became ready."""


def environment(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without its ``RECO_*`` variables, plus every setting as its variable."""
    env = {k: v for k, v in base.items() if not k.startswith("RECO_") and k != "APP_ENV"}
    for field in attrs.fields(Settings):
        value = getattr(settings, field.name)
        if value is None:
            continue
        if isinstance(value, tuple):
            text = ",".join(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, enum.Enum):
            text = str(value.value)
        else:
            text = str(value)
        env[env_name(field.name)] = text
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, deadline: float) -> None:
    """Poll ``/readyz?strict=1`` until 200 (every check, the consumer's too: the
    evaluation feeds it); raise when the process exits or the deadline passes."""
    client = Client(base_url, timeout=2.0)
    until = time.monotonic() + deadline
    try:
        while True:
            if process.poll() is not None:
                raise ServiceFailed(f"the service exited with status {process.returncode}")
            try:
                if client.request_once("GET", "/readyz?strict=1")[0] == 200:
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > until:
                raise ServiceFailed(f"the service was not ready within {deadline:g} s")
            time.sleep(READY_POLL)  # blocking start-up helper, before any event loop runs
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM (the service's graceful stop), then SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@contextmanager
def service_process(settings: Settings, log_file: Path) -> Iterator[str]:
    """Start ``reco serve`` with ``settings``; yield its base URL once ready; stop it on exit."""
    env = environment(settings, os.environ)
    host, port = settings.http_host_port
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reco", "serve"], env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop it gracefully
        )  # fmt: skip
    try:
        try:
            _wait_ready(process, f"http://{host}:{port}", settings.startup_timeout + 10)
        except ServiceFailed as exc:
            raise ServiceFailed(f"{exc}; its log ({log_file}) ends:\n{_tail(log_file)}") from None
        yield f"http://{host}:{port}"
    finally:
        _stop(process, settings.shutdown_timeout + 5)
