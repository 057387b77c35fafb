"""Progress for long phases: a redrawn bar on a terminal, a few plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR = 30
LINES = 10  # plain lines per phase when not on a terminal


class Progress:
    """``advance(n)`` as work completes; ``close()`` prints the phase's total and time."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._began = time.perf_counter()
        self._next_line = 1

    def advance(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        if self.tty:
            self._draw()
        elif self.total and self.done * LINES >= self._next_line * self.total:
            self._next_line = self.done * LINES // self.total + 1
            self.stream.write(f"{self.label}: {self.done}/{self.total}\n")
            self.stream.flush()

    def close(self) -> None:
        elapsed = time.perf_counter() - self._began
        line = f"{self.label}: {self.done}/{self.total} in {elapsed:.1f} s"
        # On a terminal, overwrite the bar (and blank its leftovers).
        self.stream.write(f"\r{line}{' ' * BAR}\n" if self.tty else f"{line}\n")
        self.stream.flush()

    def _draw(self) -> None:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(fraction * BAR)
        bar = "#" * filled + "-" * (BAR - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
        self.stream.flush()
