"""Read the MovieLens files (RecBole "atomic" format, as in ../shared/datasets/ml-100k)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from reco.events import WatchEvent


def default_dataset_dir() -> Path:
    """``../shared/datasets/ml-100k`` from the repository root, or from a parent of it.

    A git worktree under ``wt/NAME`` finds the same ``shared`` as the main checkout.
    """
    root = Path(__file__).resolve().parent.parent
    for parent in root.parents:
        candidate = parent / "shared" / "datasets" / "ml-100k"
        if candidate.is_dir():
            return candidate
    return root.parent / "shared" / "datasets" / "ml-100k"


def _rows(path: Path) -> Iterator[list[str]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        next(handle)  # the name:type header
        for line in handle:
            if line.strip():
                yield line.rstrip("\n").split("\t")


def items(directory: Path) -> list[dict[str, object]]:
    """Catalogue entries for ``POST /v1/items`` from the ``.item`` file."""
    out: list[dict[str, object]] = []
    for item_id, title, year, genres in _rows(next(directory.glob("*.item"))):
        out.append({
            "item_id": item_id, "title": title or f"item {item_id}",
            "genres": sorted(set(genres.split())), "attributes": {"year": year},
        })  # fmt: skip
    return out


def watch_events(directory: Path) -> list[WatchEvent]:
    """Every rating as a watch event, in time order (ties by user, item)."""
    events = []
    for user_id, item_id, _rating, timestamp in _rows(next(directory.glob("*.inter"))):
        at = dt.datetime.fromtimestamp(float(timestamp), dt.UTC)
        events.append(WatchEvent(f"ml-{user_id}-{item_id}", user_id, item_id, at))
    events.sort(key=lambda e: (e.occurred_at, e.user_id, e.item_id))
    return events
