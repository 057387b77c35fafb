"""`just check-migrations`: migrate a fresh embedded database, then check it.

CI runs this so that a migration file that does not apply, or a checker
that disagrees with a freshly migrated schema, fails the build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from reco_dev.devstack.postgres import EmbeddedPostgres


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="reco-check-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", durable=False)
        postgres.start()
        try:
            postgres.psql("CREATE DATABASE reco")
            env = {**os.environ, "RECO_DATABASE_URL": postgres.url("reco")}
            for command in ("migrate", "check-migrations"):
                done = subprocess.run([sys.executable, "-m", "reco", command], env=env, check=False)
                if done.returncode != 0:
                    return done.returncode
        finally:
            postgres.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
