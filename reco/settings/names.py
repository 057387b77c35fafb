"""The leaves of the settings tree by the names operators know, and ``evolve`` by those names.

A leaf's *environment name* is what an operator sets (``RECO_DB_POOL_MAX_SIZE``);
its *flat name* is that without ``RECO_``, in lower case (``db_pool_max_size``,
``app_env``): the name of the one flat settings class this tree replaced, so
tests and tools say ``evolve(settings, database_url=...)`` as they always did.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from reco.settings.sections import Settings


@attrs.frozen
class Knob:
    """One leaf: where it sits in the tree and what it is called outside."""

    path: tuple[str, ...]  # ("database", "url"); a top-level leaf has one element
    env: str
    field: attrs.Attribute[Any]

    @property
    def flat(self) -> str:
        return self.env.removeprefix("RECO_").lower()

    @property
    def secret(self) -> bool:
        return bool(self.field.metadata.get("secret"))

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    def value(self, settings: Settings) -> Any:
        node: Any = settings
        for name in self.path:
            node = getattr(node, name)
        return node


def _walk(cls: type, path: tuple[str, ...]) -> Iterator[Knob]:
    for field in attrs.fields(cls):
        if isinstance(field.type, type) and attrs.has(field.type):
            yield from _walk(field.type, (*path, field.name))
        else:
            env = field.metadata.get("env") or cls.ENV_PREFIX + field.name.upper()  # type: ignore[attr-defined]
            yield Knob((*path, field.name), env, field)


KNOBS: tuple[Knob, ...] = tuple(_walk(Settings, ()))
BY_ENV = {knob.env: knob for knob in KNOBS}
BY_FLAT = {knob.flat: knob for knob in KNOBS}
BY_PATH = {knob.path: knob for knob in KNOBS}
assert len(BY_ENV) == len(BY_FLAT) == len(KNOBS), "two leaves share an environment name"


def env_name(*path: str) -> str:
    """The environment variable of the leaf at ``path`` (``env_name("database", "url")``)."""
    return BY_PATH[path].env


def evolve(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with ``changes`` by flat name; an unknown name is a :class:`TypeError`."""
    by_section: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for flat, value in changes.items():
        knob = BY_FLAT.get(flat)
        if knob is None:
            raise TypeError(f"evolve() got an unknown setting {flat!r}")
        if len(knob.path) == 1:
            top[knob.path[0]] = value
        else:
            by_section.setdefault(knob.path[0], {})[knob.path[1]] = value
    for section, fields in by_section.items():
        top[section] = attrs.evolve(getattr(settings, section), **fields)
    return attrs.evolve(settings, **top)
