from __future__ import annotations

import socket
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, *, alive: object = None) -> None:
    """Block until ``host:port`` accepts TCP connections, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{host}:{port} did not accept connections in {timeout:g} s"
                ) from None
            if callable(alive) and not alive():
                raise RuntimeError(f"the process behind {host}:{port} exited") from None
            time.sleep(0.05)  # a blocking helper, used before any event loop runs
