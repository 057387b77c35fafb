"""Run ``wrk`` with a Lua script and read its figures back (shared by the HTTP benchmarks).

The script's ``done()`` prints one ``WRK-RESULT`` line with exact counts and
percentiles (microseconds), so nothing depends on wrk's human-readable units.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import attrs

DONE_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK-RESULT %d %d %d %d %d %d %d\\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""

SEED_LUA = """
local thread_counter = 0
setup = function(thread)
  thread_counter = thread_counter + 1
  thread:set("thread_index", thread_counter)
end
init = function(args)
  math.randomseed(os.time() * 100 + (thread_index or 0))
end
"""

INSTALL_HINT = "wrk is not installed: apt-get update && apt-get install -y wrk"


@attrs.frozen
class WrkResult:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # socket errors and timeouts
    non_2xx: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        bad = (
            f"  errors {self.errors} non-2xx {self.non_2xx}" if self.errors or self.non_2xx else ""
        )
        return (
            f"{self.name:<28} {self.rps:>9.0f} req/s   p50 {self.p50_ms:6.2f} ms   "
            f"p90 {self.p90_ms:6.2f} ms   p99 {self.p99_ms:6.2f} ms{bad}"
        )


def wrk_path() -> str | None:
    return shutil.which("wrk")


def fixed_path_script(path: str) -> str:
    return f'wrk.path = "{path}"\n' + DONE_LUA


def random_path_script(prefix: str, ids: list[str], suffix: str) -> str:
    """A script requesting ``prefix + <random id> + suffix`` on every request."""
    quoted = ",".join(f'"{i}"' for i in ids)
    return (
        SEED_LUA
        + f"local ids = {{{quoted}}}\n"
        + "request = function()\n"
        + f'  return wrk.format("GET", "{prefix}" .. ids[math.random(#ids)] .. "{suffix}")\n'
        + "end\n"
        + DONE_LUA
    )


def run_wrk(name: str, base_url: str, script: str, *, connections: int, threads: int,
            duration: float) -> WrkResult:  # fmt: skip
    """Run wrk once against ``base_url`` with ``script``; its WRK-RESULT line, parsed."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        command = [
            wrk_path() or "wrk", f"-t{min(threads, connections)}", f"-c{connections}",
            f"-d{max(1, round(duration))}s", "--timeout", "5s", "-s", handle.name, base_url,
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        Path(handle.name).unlink()
    return _parse(name, out)


def _parse(name: str, out: str) -> WrkResult:
    for line in out.splitlines():
        if line.startswith("WRK-RESULT "):
            requests, duration, p50, p90, p99, errors, non_2xx = map(int, line.split()[1:])
            return WrkResult(name, requests, duration / 1e6, p50 / 1e3, p90 / 1e3, p99 / 1e3,
                             errors, non_2xx)  # fmt: skip
    raise RuntimeError(f"wrk printed no result:\n{out}")
