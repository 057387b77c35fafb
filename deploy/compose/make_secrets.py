"""Write random secrets for compose.yaml into deploy/compose/secrets/ (never committed).

``postgres_password`` feeds the PostgreSQL image (POSTGRES_PASSWORD_FILE); ``database_url``
(the same password inside a URL) and ``api_tokens`` feed reco (RECO_*_FILE). The values are
long random strings, so ``APP_ENV=production`` accepts them. Existing files are kept unless
``--force`` is given, so a running stack's password is not changed under it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

SECRETS_DIR = Path(__file__).resolve().parent / "secrets"


def make_secrets(host: str = "postgres", tokens: int = 2) -> dict[str, str]:
    """The three secret files' contents, consistent with each other."""
    password = secrets.token_urlsafe(32)
    return {
        "postgres_password": password,
        "database_url": f"postgresql://reco:{password}@{host}:5432/reco",
        "api_tokens": ",".join(secrets.token_urlsafe(32) for _ in range(tokens)),
    }


def write_secrets(directory: Path, values: dict[str, str], *, force: bool) -> list[Path]:
    """Write each secret as its own file; the directory is private to its owner.

    Files are world-readable because compose bind-mounts them as they are and reco runs as
    UID 10001; the 0700 directory is what keeps other host users out.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if not force and any((directory / name).exists() for name in values):
        return []
    written = []
    for name, value in values.items():
        path = directory / name
        path.write_text(value + "\n")
        path.chmod(0o644)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--force", action="store_true", help="replace existing secrets")
    parser.add_argument("--dir", type=Path, default=SECRETS_DIR)
    args = parser.parse_args(argv)
    written = write_secrets(args.dir, make_secrets(), force=args.force)
    if not written:
        print(f"secrets already in {args.dir}; --force replaces them", file=sys.stderr)
    for path in written:
        print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
