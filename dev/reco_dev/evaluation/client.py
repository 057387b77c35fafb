"""A small blocking HTTP/1.1 client for the service's API, driven from worker threads.

The runtime dependencies carry no HTTP client (httpx is only in the test
extra and the evaluation needs a handful of plain JSON calls), so this is
``http.client`` with one keep-alive connection per :class:`Client`; async
callers run :meth:`Client.request` through ``anyio.to_thread.run_sync`` and
give each concurrent worker its own client.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from typing import Any

import stamina

_METRIC_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")


class HttpError(Exception):
    """The service answered with an unexpected status."""

    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:300].decode(errors='replace')}")
        self.status = status


class Client:
    """Requests to ``base_url`` over one keep-alive connection (not thread-safe: one per worker)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        url = urllib.parse.urlsplit(base_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.prefix = url.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    # A keep-alive connection the server closed while idle fails on the next
    # request; one fresh connection is worth a second try.
    @stamina.retry(on=ConnectionError, attempts=2, wait_initial=0.01, wait_jitter=0.0)
    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """``(status, body)``; ``body`` (when not None) is sent as JSON with the bearer token."""
        return self.request_once(method, path, body)

    def request_once(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """:meth:`request` without the retry (for callers that poll anyway)."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
        try:
            self._conn.request(method, self.prefix + path, body=payload, headers=headers)
            response = self._conn.getresponse()
            return response.status, response.read()
        except Exception:
            self.close()
            raise

    def json(self, method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
        """The decoded JSON answer; :class:`HttpError` unless the status is ``expect``."""
        status, raw = self.request(method, path, body)
        if status != expect:
            raise HttpError(method, path, status, raw)
        return json.loads(raw)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def recommendations_path(user_id: str, limit: int) -> str:
    return f"/v1/users/{urllib.parse.quote(user_id, safe='')}/recommendations?limit={limit}"


def metric_total(text: str, name: str) -> float:
    """The sum of every sample of ``name`` (all label sets) in a Prometheus text page."""
    return sum(metric_samples(text, name).values())


def metric_samples(text: str, name: str) -> dict[str, float]:
    """Each sample of ``name`` by its label set as written (``""`` without labels)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        found = _METRIC_LINE.match(line)
        if found and found["name"] == name:
            labels = found["labels"] or ""
            samples[labels] = samples.get(labels, 0.0) + float(found["value"])
    return samples
