"""Settings from environment variables: one cattrs converter, every problem at once.

The variables (see :mod:`reco.settings.names`) become a nested dict shaped
like the tree, structured by one module-level converter that forbids extra
keys and runs each field's attrs validator as the field is structured, so a
bad value anywhere is collected rather than raised; ``cattrs.transform_error``
lists them and each is named by its variable. Secrets may instead be given as
``<NAME>_FILE``, a path to a file holding the value (the container-secrets
convention). A problem is a :class:`~reco.errors.ConfigError`; the CLI exits 2.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from reco.errors import ConfigError
from reco.settings import checks
from reco.settings.names import BY_PATH, KNOBS
from reco.settings.sections import SECTIONS, AppEnv, Settings

converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
converter.register_structure_hook(float, lambda v, _t: float(v))
converter.register_structure_hook(int, lambda v, _t: int(v))


def _structure_bool(value: Any, _type: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r} (use true/false)")


def _structure_tuple(value: Any, _type: Any) -> tuple[str, ...]:
    if isinstance(value, tuple):
        return value
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


converter.register_structure_hook(bool, _structure_bool)
converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _structure_tuple)


def _validated(field: attrs.Attribute[Any]) -> Callable[[Any, Any], Any]:
    """Structure one leaf, then run its validator: its problem is then this leaf's."""

    def structure(value: Any, type_: Any) -> Any:
        result = converter.structure(value, type_)
        if field.validator is not None and result is not None:
            field.validator(None, field, result)
        return result

    return structure


for _cls in (*SECTIONS, Settings):
    _leaves: dict[str, Any] = {
        field.name: override(struct_hook=_validated(field))
        for field in attrs.fields(_cls)
        if field.type not in SECTIONS
    }
    converter.register_structure_hook(_cls, make_dict_structure_fn(_cls, converter, **_leaves))


def _read_environ(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The tree-shaped dict of the variables set, and the problems of their ``_FILE`` forms."""
    tree: dict[str, Any] = {}
    problems: list[str] = []
    for knob in KNOBS:
        name, file_var = knob.env, f"{knob.env}_FILE"
        if knob.secret and file_var in environ:
            if name in environ:
                problems.append(f"{name}: set both {name} and {file_var}; set one")
                continue
            try:
                text = Path(environ[file_var]).read_text().strip()
            except OSError as exc:
                problems.append(f"{file_var}: cannot read {environ[file_var]!r}: {exc.strerror}")
                continue
        elif name in environ:
            text = environ[name]
        else:
            continue
        node = tree
        for part in knob.path[:-1]:
            node = node.setdefault(part, {})
        node[knob.path[-1]] = text
    return tree, problems


# Settings that are gone, and what took their place (a plain "unknown" would leave the
# operator guessing).
REMOVED = {
    "RECO_WRITER_DRAIN_TIMEOUT": "removed: the impression writer drains within its share of "
    "RECO_SHUTDOWN_TIMEOUT (docs/design.md, Shutdown phases)",
}


def _unknown(environ: Mapping[str, str]) -> list[str]:
    known = {knob.env for knob in KNOBS} | {f"{knob.env}_FILE" for knob in KNOBS if knob.secret}
    return [
        f"{name}: {REMOVED.get(name, 'unknown setting')}"
        for name in sorted(environ)
        if name.startswith("RECO_") and name not in known
    ]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``).

    Every problem is reported at once, including unknown ``RECO_`` variables (typos).
    """
    environ = os.environ if environ is None else environ
    tree, problems = _read_environ(environ)
    problems += _unknown(environ)
    try:
        settings = converter.structure(tree, Settings)
    except cattrs.ClassValidationError as exc:
        problems += cattrs.transform_error(exc, path="", format_exception=_describe)
    if problems:
        raise ConfigError([_named(problem) for problem in problems])
    problems = checks.problems(settings) + _plain_secret_problems(environ, settings)
    if problems:
        raise ConfigError(problems)
    return settings


_ENV_BY_DOTTED = {"." + ".".join(path): knob.env for path, knob in BY_PATH.items()}


def _named(problem: str) -> str:
    """``"expected a number @ .database.pool_max_size"`` as ``"RECO_DB_POOL_MAX_SIZE: ..."``."""
    text, at, path = problem.rpartition(" @ ")
    if not at:
        return problem
    return f"{_ENV_BY_DOTTED.get(path, path)}: {text}"


def _plain_secret_problems(environ: Mapping[str, str], settings: Settings) -> list[str]:
    """In production, a secret given as a plain variable is refused (unless opted in)."""
    if settings.app_env is not AppEnv.PRODUCTION or settings.allow_env_secrets:
        return []
    return [
        f"{knob.env}: in production give secrets as files ({knob.env}_FILE), or set "
        "RECO_ALLOW_ENV_SECRETS=true to accept the plain variable"
        for knob in KNOBS
        if knob.secret and knob.env in environ
    ]


def _describe(exc: BaseException, type_: Any) -> str:
    if isinstance(type_, type) and issubclass(type_, enum.Enum):
        return "expected one of " + ", ".join(m.value for m in type_)
    if isinstance(exc, ValueError) and str(exc).startswith(("must", "not a")):
        return str(exc)
    name = {bool: "true or false", int: "an integer", float: "a number"}.get(type_, str(type_))
    return f"expected {name}"
