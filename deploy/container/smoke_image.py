"""Run the built image the way production does, against the embedded stack, and check it.

    python deploy/container/smoke_image.py --image localhost/reco:0.1.0 [--engine podman]
        [--engine-arg=--runtime=runc ...] [--run-arg=--ulimit=nofile=4096:4096 ...]

Starts the embedded PostgreSQL and broker on loopback, writes production-grade secrets
to files, then with the container engine (host network, read-only root, tmpfs /tmp, no
capabilities, no-new-privileges, UID 10001, APP_ENV=production from the image):

1. ``reco migrate`` exits 0;
2. ``reco serve`` answers /readyz 200; the image's HEALTHCHECK script exits 0;
3. the root filesystem refuses writes; the process is UID 10001 with no effective
   capability (CapEff 0) and NoNewPrivs 1 (read from /proc with the image's Python: the
   image has no ``id``);
4. the image has no shell, no package manager, no perl and no pip (``exec sh`` fails;
   none of those files exists; ``import pip`` fails);
5. /metrics passes ``promtool check metrics`` (when promtool is installed);
6. ``stop`` (SIGTERM) ends it with exit status 0.

`just container-smoke` builds the image and runs this (CI does, from .ci/run); prints one
line per check, exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from reco_dev.devstack.ports import free_port
from reco_dev.devstack.stack import DEV_DATABASE, embedded_stack

HARDENING = ["--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,size=64m", "--cap-drop=ALL",
             "--security-opt", "no-new-privileges", "--network=host"]  # fmt: skip
# No --user: the check below is that the image itself runs as UID 10001.
FORBIDDEN = ["/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash", "/bin/dash",
             "/usr/bin/apt", "/usr/bin/apt-get", "/usr/bin/dpkg", "/usr/bin/perl",
             "/usr/bin/env", "/usr/bin/id", "/bin/sleep", "/usr/bin/sleep",
             "/opt/reco/bin/pip", "/usr/lib/python3.11/ensurepip"]  # fmt: skip
# Run inside the container by its own Python: what the process is and what the image lacks.
INSPECT = f"""
import glob, importlib.util, json, os
status = dict(line.split(":", 1) for line in open("/proc/1/status") if ":" in line)
print(json.dumps({{
    "uid": os.getuid(), "cap_eff": status["CapEff"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "present": [p for p in {FORBIDDEN!r} if os.path.lexists(p)],
    "pip_wheels": glob.glob("/usr/lib/python3*/**/pip-*.whl", recursive=True)
                  + glob.glob("/usr/local/lib/python3*/**/pip-*.whl", recursive=True),
    "pip": importlib.util.find_spec("pip") is not None,
}}))
"""


def write_secrets(directory: Path, database_url: str) -> None:
    directory.mkdir(mode=0o755)
    (directory / "database_url").write_text(database_url + "\n")
    (directory / "api_tokens").write_text(secrets.token_urlsafe(32) + "\n")
    for path in directory.iterdir():
        path.chmod(0o644)  # the container's UID 10001 reads them through the bind mount


def ready(port: int, deadline: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic() - began
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"/readyz not 200 within {deadline:g} s")


class Smoke:
    def __init__(self, engine: list[str], run_args: list[str], image: str) -> None:
        self.engine, self.run_args, self.image = engine, run_args, image
        self.failures = 0

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.engine, *args], capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        self.failures += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {what}  {detail}".rstrip(), flush=True)

    def container(self, env: list[str], *command: str, detach: bool = False) -> subprocess.CompletedProcess[str]:  # fmt: skip
        mode = ["-d", "--name", "reco-smoke"] if detach else ["--rm"]
        return self.run("run", *mode, *HARDENING, *self.run_args, *env, self.image, *command)


def failed(done: subprocess.CompletedProcess[str]) -> str:
    """The end of a failed command's stderr, for the FAIL line (nothing when it passed)."""
    return done.stderr[-300:] if done.returncode else ""


def hardened(tool: Smoke) -> None:
    done = tool.run("exec", "reco-smoke", "/opt/reco/bin/python", "-c", INSPECT)
    if done.returncode != 0:
        tool.check("inspect the running container", False, done.stderr[-300:])
        return
    seen = json.loads(done.stdout)
    tool.check("runs as UID 10001", seen["uid"] == 10001, str(seen["uid"]))
    tool.check("no effective capability", int(seen["cap_eff"], 16) == 0, seen["cap_eff"])
    tool.check("no new privileges", seen["no_new_privs"] == "1", seen["no_new_privs"])
    tool.check("no shell, package manager, perl or pip", not seen["present"],
               " ".join(seen["present"]))  # fmt: skip
    tool.check("no pip module or wheel", not seen["pip"] and not seen["pip_wheels"],
               " ".join(seen["pip_wheels"]))  # fmt: skip
    done = tool.run("exec", "reco-smoke", "sh", "-c", "true")
    tool.check("exec sh fails", done.returncode != 0, f"exit {done.returncode}")


def metrics(tool: Smoke, port: int) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        print("SKIP  /metrics through promtool (Debian package prometheus)", flush=True)
        return
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read()
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          timeout=30, check=False)  # fmt: skip
    tool.check("/metrics passes promtool check metrics", done.returncode == 0,
               done.stderr.decode()[-300:])  # fmt: skip


def smoke(tool: Smoke, stack_dir: Path) -> None:
    with embedded_stack(stack_dir / "stack", durable=False) as (postgres, broker):
        assert broker is not None
        password = secrets.token_urlsafe(24)  # trust auth ignores it; production checks it
        url = f"postgresql://postgres:{password}@127.0.0.1:{postgres.port}/{DEV_DATABASE}"
        write_secrets(stack_dir / "secrets", url)
        port = free_port()
        env = ["-v", f"{stack_dir / 'secrets'}:/run/secrets:ro",
               "-e", "RECO_DATABASE_URL_FILE=/run/secrets/database_url",
               "-e", "RECO_API_TOKENS_FILE=/run/secrets/api_tokens",
               "-e", f"RECO_KAFKA_BOOTSTRAP={broker.bootstrap}",
               "-e", "RECO_MIGRATE_ON_START=false", "-e", f"RECO_HTTP_BIND=127.0.0.1:{port}"]  # fmt: skip
        done = tool.container(env, "migrate")
        tool.check("reco migrate exits 0", done.returncode == 0, failed(done))
        # numpy and scipy load in the hardened image (read-only root, no compiler, /tmp only).
        done = tool.container(env, "train")
        tool.check("reco train exits 0 (empty history)", done.returncode == 0, failed(done))
        tool.run("rm", "-f", "reco-smoke")
        done = tool.container(env, detach=True)
        tool.check("reco serve starts", done.returncode == 0, failed(done))
        try:
            tool.check("/readyz 200", True, f"in {ready(port, 60):.1f} s")
            done = tool.run(
                "exec", "reco-smoke", "/opt/reco/bin/python", "/opt/reco/healthcheck.py"
            )
            tool.check("HEALTHCHECK script exits 0", done.returncode == 0, failed(done))
            done = tool.run(
                "exec", "reco-smoke", "/opt/reco/bin/python", "-c", "open('/opt/x', 'w')"
            )
            tool.check("root filesystem is read-only", "Read-only file system" in done.stderr)
            hardened(tool)
            metrics(tool, port)
            began = time.monotonic()
            tool.run("stop", "-t", "30", "reco-smoke")
            status = tool.run("inspect", "reco-smoke", "--format", "{{.State.ExitCode}}").stdout
            took = f"exit {status.strip()} in {time.monotonic() - began:.1f} s"
            tool.check("SIGTERM exits 0", status.strip() == "0", took)
        except TimeoutError as exc:
            tool.check("/readyz 200", False, str(exc))
            print(tool.run("logs", "reco-smoke").stdout[-2000:])
        finally:
            tool.run("rm", "-f", "reco-smoke")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="localhost/reco:0.1.0")
    parser.add_argument("--engine", default="podman")
    parser.add_argument("--engine-arg", action="append", default=[], help="e.g. --runtime=runc")
    parser.add_argument(
        "--run-arg", action="append", default=[], help="e.g. --ulimit=nofile=4096:4096"
    )
    args = parser.parse_args(argv)
    tool = Smoke([args.engine, *args.engine_arg], args.run_arg, args.image)
    for attempt in range(1, 4):
        # pg_isready can report "rejecting connections" (exit 1) at once while the embedded
        # PostgreSQL is still starting: start the stack again.
        with tempfile.TemporaryDirectory(prefix="reco-image-smoke-") as tmp:
            try:
                smoke(tool, Path(tmp))
            except subprocess.CalledProcessError:
                if attempt == 3:
                    raise
                continue
        break
    return 1 if tool.failures else 0


if __name__ == "__main__":
    sys.exit(main())
