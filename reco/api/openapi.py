"""The OpenAPI 3.1 document of the whole service, served at ``GET /openapi.json``.

Built once from the small helpers below (so that shared pieces such as the
problem responses are written once) and served as pre-encoded bytes. It
covers every endpoint of the process, including the ones other modules
serve (health, metrics, ``POST /v1/events``); tests/integration/
test_openapi.py checks real responses against it and that no route is
missing from it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from quart import Blueprint, Response

from reco import __version__
from reco.api import validation
from reco.api.events import MAX_EVENTS
from reco.events import MAX_WATCHED_SECONDS

blueprint = Blueprint("openapi", __name__)

JSON = "application/json"
PROBLEM = "application/problem+json"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# PostgreSQL text: no NUL (and no lone surrogate, which JSON Schema cannot spell).
NO_NUL = "^[^\\u0000]*$"
NO_NUL_OR_SLASH = "^[^/\\u0000]*$"  # a path segment: '/' would be another segment


def _text(min_length: int, max_length: int, description: str = "", **extra: Any) -> Schema:
    schema: Schema = {"type": "string", "minLength": min_length, "maxLength": max_length,
                      "pattern": NO_NUL, **extra}  # fmt: skip
    if description:
        schema["description"] = description
    return schema


def _id(description: str, **extra: Any) -> Schema:
    return _text(1, validation.MAX_ID_LENGTH, description, **extra)


def _object(properties: dict[str, Schema], required: list[str], **extra: Any) -> Schema:
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False, **extra}  # fmt: skip


def _schemas() -> dict[str, Schema]:
    return {**_problem_schemas(), **_catalogue_schemas(), **_read_schemas(), **_ops_schemas()}


def _problem_schemas() -> dict[str, Schema]:
    problem = {
        "type": "object", "description": "RFC 9457 problem details.",
        "properties": {
            "type": {"type": "string", "format": "uri"}, "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
        },
        "required": ["type", "title", "status", "detail"],
    }  # fmt: skip
    entry = {
        "type": "object",
        "properties": {
            "pointer": {"type": "string", "description": "JSON pointer into the request body"},
            "detail": {"type": "string"},
        },
        "required": ["detail"],
    }
    invalid = {
        "allOf": [ref("Problem")],
        "description": "A body that breaks the contract; `errors` lists every problem.",
        "properties": {"errors": {"type": "array", "items": entry, "minItems": 1}},
        "required": ["errors"],
    }
    return {"Problem": problem, "ValidationProblem": invalid}


def _item_properties() -> dict[str, Schema]:
    return {
        "title": _text(1, validation.MAX_TITLE_LENGTH),
        "genres": {
            "type": "array", "maxItems": validation.MAX_GENRES, "default": [],
            "items": _text(1, validation.MAX_GENRE_LENGTH),
            "description": "Repeated genres are kept once.",
        },
        "active": {"type": "boolean", "default": True,
                   "description": "Inactive items are never recommended."},
        "attributes": {
            "type": "object", "default": {},
            "description": "Free-form metadata: nests at most "
                           f"{validation.MAX_ATTRIBUTES_DEPTH} levels (this object is one); "
                           "every key and string value is text without NUL or lone surrogates.",
        },
    }  # fmt: skip


def _catalogue_schemas() -> dict[str, Schema]:
    props = _item_properties()
    item_id = _id("Not `popular` (reserved) and without `/`.", pattern=NO_NUL_OR_SLASH,
                  **{"not": {"const": "popular"}})  # fmt: skip
    stamp = {"type": "string", "format": "date-time"}
    batch_item = _object({"item_id": item_id, **props}, ["item_id", "title"])
    return {
        "ItemWrite": _object(props, ["title"]),
        "BatchItemWrite": batch_item,
        "ItemBatch": _object(
            {
                "items": {
                    "type": "array",
                    "items": ref("BatchItemWrite"),
                    "minItems": 1,
                    "maxItems": validation.MAX_BATCH_ITEMS,
                }
            },
            ["items"],
        ),
        "Item": _object(
            {"item_id": item_id, **props, "created_at": stamp, "updated_at": stamp},
            ["item_id", "title", "genres", "active", "attributes", "created_at", "updated_at"],
        ),
        "Upserted": _object({"upserted": {"type": "integer", "minimum": 0}}, ["upserted"]),
    }


def _read_schemas() -> dict[str, Schema]:
    reason = _object(
        {
            "type": {"enum": ["because_you_watched", "popular", "trending"]},
            "item_id": {"type": "string", "description": "The watched item that led here."},
        },
        ["type"],
    )
    item = _object(
        {"item_id": {"type": "string"}, "title": {"type": "string"},
         "score": {"type": "number"}, "reason": reason},
        ["item_id", "title", "score", "reason"],
    )  # fmt: skip
    listing = _object(
        {
            "recommendation_id": {"type": "string", "format": "uuid",
                                  "description": "Names this list in impressions."},
            "user_id": {"type": ["string", "null"],
                        "description": "The user; null for similar and popular lists."},
            "algorithm": {"type": "string", "description": (
                "What the list was scored from: trending, popular, cooccurrence, or with a "
                "trained model its method and version (ease@v12), joined by + "
                "(cooccurrence+ease@v12); impressions record the same value.")},
            "items": {"type": "array", "items": ref("RecommendedItem"),
                      "maxItems": validation.MAX_LIMIT},
        },
        ["recommendation_id", "user_id", "algorithm", "items"],
    )  # fmt: skip
    return {"RecommendedItem": item, "RecommendationList": listing}


def _ops_schemas() -> dict[str, Schema]:
    check = {
        "type": "object",
        "description": "One check, with the data its component reports (backlog, lag, ...).",
        "properties": {
            "status": {"enum": ["ok", "degraded", "failing"],
                       "description": "`failing`: a critical check fails (not ready); "
                                      "`degraded`: another check fails (still ready)."},
            "critical": {"type": "boolean",
                         "description": "Whether /readyz (not strict) needs this check."},
            "detail": {"type": "string"},
        },
        "required": ["status", "critical"],
    }  # fmt: skip
    event = {
        "type": "object", "description": "One watch event; unknown fields are ignored.",
        "properties": {
            "event_id": _id("Idempotency key: a repeated id is stored once."),
            "user_id": _id("The user who watched."), "item_id": _id("The item watched."),
            "occurred_at": {"type": "string", "format": "date-time",
                            "description": "RFC 3339 with a UTC offset; any instant of the "
                                           "years 1 to 9999 in UTC, at most "
                                           "RECO_EVENT_MAX_FUTURE seconds (default 300) "
                                           "ahead of the service's clock."},
            "watched_seconds": {"type": ["number", "null"], "minimum": 0,
                                "maximum": MAX_WATCHED_SECONDS},
            "completed": {"type": ["boolean", "null"]},
        },
        "required": ["event_id", "user_id", "item_id", "occurred_at"],
    }  # fmt: skip
    return {
        "Health": _object({"status": {"const": "ok"}}, ["status"]),
        "Readiness": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {
                    "enum": ["ready", "degraded", "not ready"],
                    "description": "`degraded`: every critical check passes, another "
                    "fails (200 unless strict).",
                },
                "checks": {"type": "object", "additionalProperties": check},
            },
        },
        "WatchEvent": event,
        "EventBatch": _object(
            {
                "events": {
                    "type": "array",
                    "items": ref("WatchEvent"),
                    "minItems": 1,
                    "maxItems": MAX_EVENTS,
                }
            },
            ["events"],
        ),
        "Accepted": _object(
            {
                "accepted": {"type": "integer", "minimum": 0},
                "duplicates": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Events already in the outbox (not enqueued again).",
                },
            },
            ["accepted"],
            additionalProperties=True,
            description="May carry further counters.",
        ),
    }


# ---------------------------------------------------------------- operations


def _content(media: str, schema: Schema) -> dict[str, Any]:
    return {media: {"schema": schema}}


def ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": _content(JSON, ref(schema))}


def problem(description: str, schema: str = "Problem", **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": _content(PROBLEM, ref(schema)), **extra}


def _errors(*statuses: int) -> dict[str, Any]:
    """The problem answers of an operation; every operation may also answer 500.

    No ``default`` response: it would make any status code conform.
    """
    texts = {
        400: "A malformed parameter (text must be UTF-8 without NUL), or a body that is not "
             f"JSON we read: NaN, numbers beyond a double, nesting over "
             f"{validation.MAX_JSON_DEPTH} levels.",
        404: "No such item, or no such route (a path parameter holding `/` or a dot segment).",
        413: "The body is larger than RECO_MAX_BODY_BYTES.",
        503: "Not ready: a dependency is down, or the impression buffer is full.",
    }  # fmt: skip
    out: dict[str, Any] = {str(s): problem(texts[s]) for s in statuses if s in texts}
    if 401 in statuses:
        challenge = {
            "WWW-Authenticate": {
                "schema": {"type": "string"},
                "description": "Bearer challenge (RFC 6750).",
            }
        }
        out["401"] = problem("No bearer token.", headers=challenge)
        out["403"] = problem("A bearer token that matches none of RECO_API_TOKENS.")
    if 422 in statuses:
        out["422"] = problem("The body breaks the contract.", "ValidationProblem")
    if 431 in statuses:  # long repeatable query parameters can reach it
        out["431"] = {"description": "The request line and headers exceed 16 KiB, the HTTP "
                                     "server's limit: an empty answer from the server, not a "
                                     "problem document."}  # fmt: skip
    out["500"] = problem("An unexpected error; the traceback is logged under the request id.")
    return out  # fmt: skip


def _param(name: str, where: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {"name": name, "in": where, "schema": schema, "description": description, **extra}


LIMIT = _param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": validation.MAX_LIMIT,
     "default": validation.DEFAULT_LIMIT},
    "How many items at most.",
)  # fmt: skip
STRICT = _param(
    "strict",
    "query",
    {"type": "string", "enum": list(validation.FLAG_VALUES), "default": "0"},
    "1 or true: answer 200 only when every check passes (the old conjunction).",
)
FILTER = {"type": "array", "items": _id(""), "maxItems": validation.MAX_FILTER_VALUES}
GENRE = _param("genre", "query", FILTER, "Only items of these genres (repeatable).", explode=True)
EXCLUDE = _param("exclude", "query", FILTER, "Item ids never to return (repeatable).", explode=True)
ITEM_ID = _param("item_id", "path", _id("", pattern=NO_NUL_OR_SLASH), "The item id.", required=True)
USER_ID = _param("user_id", "path", _id("", pattern=NO_NUL_OR_SLASH), "The user id.", required=True)
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": _content(JSON, ref(schema))}


def _paths() -> dict[str, Any]:
    return {**_ops_paths(), **_catalogue_paths(), **_read_paths()}


# Any route: the URL's text is checked before routing (reco.api.app._check_url_text).
URL_TEXT = problem("A query parameter that is not UTF-8 text without NUL.")


def _ops_paths() -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "/healthz": {"get": {
            "summary": "Liveness: the process answers (dependencies are not checked).",
            "operationId": "healthz", "tags": ["operations"],
            "responses": {"200": ok("Alive.", "Health"), "400": URL_TEXT}}},
        "/readyz": {"get": {
            "summary": "Readiness: this instance can serve HTTP traffic.",
            "description": "200 when the critical checks (the database) pass and the process "
                           "is not shutting down, even when other checks (consumer, outbox) "
                           "fail: the status is then `degraded`. With `strict=1`, 200 only when "
                           "every check passes. The body is the same either way.",
            "operationId": "readyz", "tags": ["operations"], "parameters": [STRICT],
            "responses": {"200": ok("Ready or degraded (strict: ready).", "Readiness"),
                          "400": _errors(400)["400"],
                          "503": {"description": "Not ready (strict: not ready or degraded).",
                                  "content": _content(JSON, ref("Readiness"))}}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics in the text exposition format.",
            "operationId": "metrics", "tags": ["operations"],
            "responses": {"200": {"description": "The metrics.", "content": text},
                          "400": URL_TEXT}}},
        "/openapi.json": {"get": {
            "summary": "This document.", "operationId": "openapi", "tags": ["operations"],
            "responses": {"200": {"description": "OpenAPI 3.1.",
                                  "content": _content(JSON, {"type": "object"})},
                          "400": URL_TEXT}}},
        "/v1/events": {"post": {
            "summary": "Ingest watch events (stored once per event_id).",
            "operationId": "postEvents", "tags": ["events"], "security": BEARER,
            "requestBody": _body("EventBatch"),
            "responses": {"202": ok("Accepted for processing.", "Accepted"),
                          **_errors(400, 401, 413, 422, 503)}}},
    }  # fmt: skip


def _catalogue_paths() -> dict[str, Any]:
    return {
        "/v1/items": {"post": {
            "summary": "Create or replace up to 1000 items in one transaction.",
            "operationId": "upsertItems", "tags": ["catalogue"], "security": BEARER,
            "requestBody": _body("ItemBatch"),
            "responses": {"200": ok("Stored.", "Upserted"), **_errors(400, 401, 413, 422, 503)}}},
        "/v1/items/{item_id}": {
            "parameters": [ITEM_ID],
            "put": {"summary": "Create or replace one item.", "operationId": "putItem",
                    "tags": ["catalogue"], "security": BEARER, "requestBody": _body("ItemWrite"),
                    "responses": {"200": ok("Replaced.", "Item"), "201": ok("Created.", "Item"),
                                  **_errors(400, 401, 404, 413, 422, 503)}},
            "get": {"summary": "Read one item (inactive ones too).", "operationId": "getItem",
                    "tags": ["catalogue"],
                    "responses": {"200": ok("The item.", "Item"), **_errors(400, 404, 503)}},
            "delete": {"summary": "Mark an item inactive; it is never recommended again.",
                       "operationId": "deleteItem", "tags": ["catalogue"], "security": BEARER,
                       "responses": {"204": {"description": "Marked inactive."},
                                     **_errors(400, 401, 404, 503)}},
        },
    }  # fmt: skip


def _read_paths() -> dict[str, Any]:
    listing = ok("A recommendation list.", "RecommendationList")
    return {
        "/v1/users/{user_id}/recommendations": {"get": {
            "summary": "Personal recommendations, never an item the user watched; "
                       "popular items for a user without history.",
            "operationId": "userRecommendations", "tags": ["recommendations"],
            "parameters": [USER_ID, LIMIT, GENRE, EXCLUDE],
            "responses": {"200": listing, **_errors(400, 404, 431, 503)}}},
        "/v1/items/{item_id}/similar": {"get": {
            "summary": "Items watched together with this one (user_id is null).",
            "operationId": "similarItems", "tags": ["recommendations"],
            "parameters": [ITEM_ID, LIMIT],
            "responses": {"200": listing, **_errors(400, 404, 503)}}},
        "/v1/items/popular": {"get": {
            "summary": "The most popular active items (user_id is null).",
            "operationId": "popularItems", "tags": ["recommendations"],
            "parameters": [LIMIT, GENRE],
            "responses": {"200": listing, **_errors(400, 431, 503)}}},
    }  # fmt: skip


DESCRIPTION = (
    "Recommendations from a catalogue and watch history. Every error answers "
    "application/problem+json (RFC 9457). Write endpoints need a bearer token. "
    "Unknown query parameters of the recommendation endpoints are a 400. "
    "All text (path segments, query names and values, ids, titles, genres, attribute keys "
    "and values) is UTF-8 without NUL (U+0000) or lone surrogates: a 400 in the URL, a 422 "
    f"in a body. A JSON body nests at most {validation.MAX_JSON_DEPTH} levels and its numbers "
    f"are finite doubles (integers of at most {validation.MAX_INT_DIGITS} digits): else a 400."
)


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "reco", "version": __version__,
                 "description": DESCRIPTION},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token from RECO_API_TOKENS."}},
        },
    }  # fmt: skip


@functools.cache
def _encoded() -> bytes:
    return json.dumps(document(), separators=(",", ":")).encode()


@blueprint.get("/openapi.json")
async def openapi_json() -> Response:
    return Response(_encoded(), content_type=JSON)
