"""Pure validation of HTTP input: path segments, query parameters and JSON bodies.

Every helper takes plain values (no request object, no I/O) and either
returns the validated value or raises :class:`~reco.api.problems.Problem`
with a detail that names the offending parameter or field. The status codes:

- 400 for what cannot be read at all: a malformed path or query parameter,
  a body that is not JSON;
- 422 for a JSON body that parses but breaks the contract (wrong types,
  unknown fields, too many items). Every body problem is listed in the
  ``errors`` extension as ``{"pointer": <JSON pointer>, "detail": ...}``.

Text everywhere (path segments, query names and values, ids, titles, genres,
attribute keys and string values) follows the one rule of
:func:`reco.events.storable_text`: PostgreSQL refuses NUL and lone
surrogates, so they are refused here with the field named, never left to
become a 500. In the URL, undecodable UTF-8 is refused too (the server would
otherwise replace it silently). A body nests at most ``MAX_JSON_DEPTH``
levels, ``attributes`` at most ``MAX_ATTRIBUTES_DEPTH``, and every number is
a finite double (at most ``MAX_INT_DIGITS`` digits for an integer).
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reco.api.problems import Problem
from reco.db.queries.items import Item
from reco.events import storable_text

MAX_ID_LENGTH = 128
MAX_TITLE_LENGTH = 1000
MAX_GENRES = 50
MAX_GENRE_LENGTH = 64
MAX_FILTER_VALUES = 500  # repeatable query parameters (genre=, exclude=)
MAX_BATCH_ITEMS = 1000
MAX_JSON_DEPTH = 64  # any body: arrays and objects nested in each other
MAX_ATTRIBUTES_DEPTH = 16  # an item's attributes (the object itself is level 1)
MAX_INT_DIGITS = 308  # so that every integer converts to a finite double
TEXT_RULE = "must be UTF-8 text without NUL (U+0000) or lone surrogates"
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
# Path segments that name a collection endpoint, not an item (GET /v1/items/popular).
RESERVED_ITEM_IDS = frozenset({"popular"})

ITEM_FIELDS = frozenset({"title", "genres", "active", "attributes"})
BATCH_ITEM_FIELDS = ITEM_FIELDS | {"item_id"}


# ----------------------------------------------------------------- path / query

_PATH_PARAMETER = re.compile(r"^<(?:[^:<>]+:)?([^<>]+)>$")


def url_text(raw_path: bytes | None, rule: str | None, query: bytes) -> None:
    """400 unless every path segment and query name and value is storable text.

    ``raw_path`` is the percent-encoded path as sent (the ASGI ``raw_path``)
    and ``rule`` the matched route template (None when nothing matched): a bad
    segment is named after the route's parameter.
    """
    if _plain(query) and (raw_path is None or _plain(raw_path)):
        return  # ASCII, no escape, no NUL: decodes to storable text (most requests)
    if raw_path is not None:
        _path_text(raw_path, rule)
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        key = _decoded(name)
        if key is None:
            raise Problem(400, f"a query parameter name {TEXT_RULE}")
        if _decoded(value) is None:
            raise Problem(400, f"{key}: {TEXT_RULE}")


def _plain(raw: bytes) -> bool:
    return raw.isascii() and b"%" not in raw and b"\x00" not in raw


def _path_text(raw_path: bytes, rule: str | None) -> None:
    segments = raw_path.split(b"/")
    names = rule.split("/") if rule is not None else []
    if len(names) != len(segments):  # no route matched: the path as a whole
        names = ["path"] * len(segments)
    for segment, name in zip(segments, names, strict=True):
        if _decoded(segment, plus=False) is None:
            match = _PATH_PARAMETER.match(name)
            raise Problem(400, f"{match.group(1) if match else 'path'}: {TEXT_RULE}")


def _decoded(raw: bytes, *, plus: bool = True) -> str | None:
    """The percent-decoded text of one URL component, or None when it is not storable."""
    if plus:
        raw = raw.replace(b"+", b" ")
    try:
        text = urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if storable_text(text) else None


def identifier(value: str, name: str) -> str:
    """A user or item id from the path or the query: 1 to 128 characters of storable text."""
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise Problem(400, f"{name}: must be 1 to {MAX_ID_LENGTH} characters, got {len(value)}")
    if not storable_text(value):
        raise Problem(400, f"{name}: {TEXT_RULE}")
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
    """Decode a request body as JSON; 400 when it is not JSON we can hold.

    Refused as well as malformed JSON: NaN and Infinity, numbers beyond a
    double's range (``1e999``, an integer of more than ``MAX_INT_DIGITS``
    digits) and nesting deeper than ``MAX_JSON_DEPTH``.
    """
    if not raw.strip():
        raise Problem(400, "the request body is empty; expected a JSON object")
    try:
        body = json.loads(
            raw, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
    except (ValueError, RecursionError) as exc:
        raise Problem(400, f"the request body is not valid JSON: {_json_error(exc)}") from None
    if _depth_exceeds(body, MAX_JSON_DEPTH):
        raise Problem(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"the number {literal[:20]} is out of range")
    return value


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(literal)


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True when arrays and objects nest more than ``limit`` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in node)
    return False


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
    if not storable_text(value):
        return TEXT_RULE
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
    elif not storable_text(title):
        errors.append(_error(f"{pointer}/title", TEXT_RULE))
    genres = _genres(body.get("genres", []), f"{pointer}/genres", errors)
    active = body.get("active", True)
    if not isinstance(active, bool):
        errors.append(_error(f"{pointer}/active", _expected("true or false", active, True)))
    attributes = body.get("attributes", {})
    if not isinstance(attributes, dict):
        errors.append(_error(f"{pointer}/attributes", _expected("an object", attributes, True)))
    else:
        errors.extend(attribute_errors(attributes, f"{pointer}/attributes"))
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
        elif not storable_text(genre):
            errors.append(_error(f"{pointer}/{index}", TEXT_RULE))
    return tuple(dict.fromkeys(value)) if all(isinstance(g, str) for g in value) else ()


def attribute_errors(attributes: dict[str, Any], pointer: str) -> list[dict[str, str]]:
    """Every key and string value storable, nesting at most ``MAX_ATTRIBUTES_DEPTH`` levels."""
    errors: list[dict[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(attributes, pointer, 1)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, str) and not storable_text(node):
            errors.append(_error(where, TEXT_RULE))
        if not isinstance(node, dict | list):
            continue
        if depth > MAX_ATTRIBUTES_DEPTH:
            errors.append(_error(where, f"attributes nest at most {MAX_ATTRIBUTES_DEPTH} levels"))
            continue
        entries = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in entries:
            child_pointer = f"{where}/{_pointer_token(str(key))}"
            if isinstance(key, str) and not storable_text(key):
                errors.append(_error(child_pointer, f"the key {TEXT_RULE}"))
            stack.append((child, child_pointer, depth + 1))
    return sorted(errors, key=lambda e: e["pointer"])


def _pointer_token(key: str) -> str:
    """One JSON pointer token (RFC 6901); an unstorable key is spelt with escapes."""
    token = key.replace("~", "~0").replace("/", "~1")
    return token if storable_text(token) else token.encode("unicode_escape").decode("ascii")


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
