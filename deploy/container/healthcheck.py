"""Container HEALTHCHECK: GET /healthz on the port reco listens on; exit 0 when it answers 200.

Liveness only (never dependencies), like Kubernetes' livenessProbe. It runs with the
image's Python and the standard library alone: the image (``FROM scratch``) has no curl,
no shell and no coreutils.
The port comes from ``RECO_HTTP_BIND`` (``HOST:PORT``); a wildcard host is probed on
loopback.
"""

from __future__ import annotations

import os
import sys
import urllib.request

TIMEOUT_SECONDS = 2.0
WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def probe_url(bind: str) -> str:
    """The /healthz URL for a ``HOST:PORT`` bind address."""
    host, _, port = bind.rpartition(":")
    host = "127.0.0.1" if host in WILDCARDS else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{int(port)}/healthz"


def main() -> int:
    url = probe_url(os.environ.get("RECO_HTTP_BIND", "127.0.0.1:8080"))
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:  # URLError and timeouts are OSErrors
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
