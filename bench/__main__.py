"""``python -m bench <name> [args...]`` runs ``bench/<name>.py``'s ``main(argv)``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] not in names:
        print(f"usage: python -m bench {{{','.join(names)}}} [args...]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{argv[0]}")
    status: int | None = module.main(argv[1:])
    return status or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
