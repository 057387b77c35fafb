"""``python -m bench NAME [ARGS...]``: run ``bench/NAME.py``'s ``main``.

A benchmark's ``main`` either takes its argument list, or reads ``sys.argv``
(argparse's default), which is set to ``["bench NAME", *ARGS]`` first. It
returns an exit status.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: python -m bench NAME [ARGS...]\nbenchmarks: " + ", ".join(available()))
        return 0 if argv else 2
    name = argv[0]
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name not in available():
        print(f"bench: no benchmark {name!r}; try one of: {', '.join(available())}")
        return 2
    module = importlib.import_module(f"bench.{name}")
    if inspect.signature(module.main).parameters:
        return int(module.main(argv[1:]) or 0)
    sys.argv = [f"bench {name}", *argv[1:]]
    return int(module.main() or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
