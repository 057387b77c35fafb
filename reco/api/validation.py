"""Pure validation of HTTP input: path segments, query parameters and JSON bodies.

Every helper takes plain values (no request object, no I/O) and either
returns the validated value or raises :class:`~reco.api.problems.Problem`
with a detail that names the offending parameter or field. The status codes:

- 400 for what cannot be read at all: a malformed path or query parameter,
  a body that is not JSON;
- 422 for a JSON body that parses but breaks the contract (wrong types,
  unknown fields, too many items). Every body problem is listed in the
  ``errors`` extension as ``{"pointer": <JSON pointer>, "detail": ...}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reco.api.problems import Problem
from reco.db.queries.items import Item

MAX_ID_LENGTH = 128
MAX_TITLE_LENGTH = 1000
MAX_GENRES = 50
MAX_GENRE_LENGTH = 64
MAX_FILTER_VALUES = 500  # repeatable query parameters (genre=, exclude=)
MAX_BATCH_ITEMS = 1000
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
# Path segments that name a collection endpoint, not an item (GET /v1/items/popular).
RESERVED_ITEM_IDS = frozenset({"popular"})

ITEM_FIELDS = frozenset({"title", "genres", "active", "attributes"})
BATCH_ITEM_FIELDS = ITEM_FIELDS | {"item_id"}


# ----------------------------------------------------------------- path / query


def identifier(value: str, name: str) -> str:
    """A user or item id from the path or the query: 1 to 128 characters."""
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise Problem(400, f"{name}: must be 1 to {MAX_ID_LENGTH} characters, got {len(value)}")
    return value


def limit(raw: str | None, *, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """The ``limit`` query parameter: an integer in 1..maximum, ``default`` when absent."""
    if raw is None:
        return default
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise Problem(400, f"limit: expected an integer from 1 to {maximum}, got {raw[:20]!r}")
    value = int(text)
    if not 1 <= value <= maximum:
        raise Problem(400, f"limit: must be from 1 to {maximum}, got {value}")
    return value


FLAG_VALUES = {"1": True, "true": True, "0": False, "false": False}


def flag(raw: str | None, name: str) -> bool:
    """A boolean query parameter (``strict=1``): ``1``/``true`` or ``0``/``false``; absent: false."""
    if raw is None:
        return False
    if raw not in FLAG_VALUES:
        raise Problem(400, f"{name}: expected one of 1, true, 0, false; got {raw[:20]!r}")
    return FLAG_VALUES[raw]


def known_params(names: Iterable[str], allowed: frozenset[str]) -> None:
    """Reject query parameters the endpoint does not know (a typo must not pass silently)."""
    unknown = sorted(set(names) - allowed)
    if unknown:
        raise Problem(400, f"unknown query parameter(s): {', '.join(unknown)}; "
                           f"allowed: {', '.join(sorted(allowed))}")  # fmt: skip


def filter_values(values: Sequence[str], name: str) -> tuple[str, ...]:
    """A repeatable query parameter (``genre=a&genre=b``): each value 1..128 characters."""
    if len(values) > MAX_FILTER_VALUES:
        raise Problem(400, f"{name}: at most {MAX_FILTER_VALUES} values, got {len(values)}")
    for value in values:
        identifier(value, name)
    return tuple(dict.fromkeys(values))  # de-duplicated, order kept


# ------------------------------------------------------------------ JSON bodies


def json_body(raw: str | bytes) -> Any:
    """Decode a request body as JSON; 400 when it is not JSON."""
    if not raw.strip():
        raise Problem(400, "the request body is empty; expected a JSON object")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Problem(400, f"the request body is not valid JSON: {_json_error(exc)}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc) or type(exc).__name__


def unprocessable(errors: list[dict[str, str]]) -> Problem:
    """A 422 problem listing every body error; the first one is the detail."""
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    detail = f"{first['pointer'] or '/'}: {first['detail']}{more}"
    return Problem(422, detail, slug="invalid-body", errors=errors)


def _error(pointer: str, detail: str) -> dict[str, str]:
    return {"pointer": pointer, "detail": detail}


def item_body(body: Any, item_id: str) -> Item:
    """The body of ``PUT /v1/items/{item_id}``; 422 listing every problem."""
    if not isinstance(body, dict):
        raise unprocessable([_error("", f"expected a JSON object, got {_json_type(body)}")])
    item, errors = _item(body, item_id, "", ITEM_FIELDS)
    if errors:
        raise unprocessable(errors)
    assert item is not None
    return item


def batch_body(body: Any, *, max_items: int = MAX_BATCH_ITEMS) -> list[Item]:
    """The body of ``POST /v1/items``: ``{"items": [...]}`` with 1..max_items entries."""
    if not isinstance(body, dict):
        raise unprocessable([_error("", f"expected a JSON object, got {_json_type(body)}")])
    errors = _unknown_fields(body, {"items"}, "")
    entries = body.get("items")
    if not isinstance(entries, list):
        errors.append(_error("/items", _expected("a list of items", entries, "items" in body)))
        raise unprocessable(errors)
    if not entries or len(entries) > max_items:
        count = f"got {len(entries)}"
        errors.append(_error("/items", f"must hold 1 to {max_items} items, {count}"))
        raise unprocessable(errors)
    items = _batch_items(entries, errors)
    if errors:
        raise unprocessable(errors)
    return items


def _batch_items(entries: list[Any], errors: list[dict[str, str]]) -> list[Item]:
    items = []
    for index, entry in enumerate(entries):
        pointer = f"/items/{index}"
        if not isinstance(entry, dict):
            errors.append(_error(pointer, f"expected a JSON object, got {_json_type(entry)}"))
            continue
        item_id, id_errors = _item_id(entry, pointer)
        item, item_errors = _item(entry, item_id, pointer, BATCH_ITEM_FIELDS)
        errors.extend(id_errors + item_errors)
        if item is not None and not id_errors:
            items.append(item)
    return items


def _item_id(entry: Mapping[str, Any], pointer: str) -> tuple[str, list[dict[str, str]]]:
    value = entry.get("item_id")
    problem = item_id_problem(value) if "item_id" in entry else "required"
    if problem:
        return "", [_error(f"{pointer}/item_id", problem)]
    return str(value), []


def item_id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be an item id to write, or None."""
    if not isinstance(value, str):
        return f"expected a string, got {_json_type(value)}"
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        return f"must be 1 to {MAX_ID_LENGTH} characters, got {len(value)}"
    if value in RESERVED_ITEM_IDS or "/" in value:
        return f"{value!r} cannot be an item id (reserved, or holds a '/')"
    return None


def _item(
    body: Mapping[str, Any], item_id: str, pointer: str, allowed: frozenset[str]
) -> tuple[Item | None, list[dict[str, str]]]:
    errors = _unknown_fields(body, allowed, pointer)
    title = body.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= MAX_TITLE_LENGTH:
        length = f"a string of 1 to {MAX_TITLE_LENGTH} characters"
        errors.append(_error(f"{pointer}/title", _expected(length, title, "title" in body)))
    genres = _genres(body.get("genres", []), f"{pointer}/genres", errors)
    active = body.get("active", True)
    if not isinstance(active, bool):
        errors.append(_error(f"{pointer}/active", _expected("true or false", active, True)))
    attributes = body.get("attributes", {})
    if not isinstance(attributes, dict):
        errors.append(_error(f"{pointer}/attributes", _expected("an object", attributes, True)))
    if errors:
        return None, errors
    return Item(item_id, str(title), genres, bool(active), attributes), []


def _genres(value: Any, pointer: str, errors: list[dict[str, str]]) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_GENRES:
        errors.append(_error(pointer, _expected(f"a list of at most {MAX_GENRES} strings", value)))
        return ()
    for index, genre in enumerate(value):
        if not isinstance(genre, str) or not 1 <= len(genre) <= MAX_GENRE_LENGTH:
            wanted = f"a string of 1 to {MAX_GENRE_LENGTH} characters"
            errors.append(_error(f"{pointer}/{index}", _expected(wanted, genre)))
    return tuple(dict.fromkeys(value)) if all(isinstance(g, str) for g in value) else ()


def _unknown_fields(
    body: Mapping[str, Any], allowed: Iterable[str], pointer: str
) -> list[dict[str, str]]:
    unknown = sorted(set(body) - set(allowed))
    if not unknown:
        return []
    names = ", ".join(unknown)
    return [_error(pointer, f"unknown field(s): {names}; allowed: {', '.join(sorted(allowed))}")]


def _expected(what: str, value: Any, present: bool = True) -> str:
    if not present:
        return f"required ({what})"
    if isinstance(value, str) and what.startswith("a string"):
        return f"expected {what}, got {len(value)} characters"
    return f"expected {what}, got {_json_type(value)}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number" if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__
