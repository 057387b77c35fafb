"""GET /openapi.json: complete, and true to what the service really answers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]  # no stubs in the test extra
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from reco.settings import Settings
from tests.support.api import Api, item, put_items, running_api, seed_popularity

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

DOC_URI = "urn:reco:openapi"


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        await put_items(running, [item("a", genres=["Drama"]), item("b")])
        await seed_popularity(running, {"a": 2.0, "b": 1.0})
        yield running


class Conformance:
    """Checks responses against the document, by path template, method and status."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOC_URI, resource)
        self.seen: set[tuple[str, str, str]] = set()

    def check(self, template: str, response: httpx.Response) -> None:
        method = response.request.method.lower()
        operation = self.document["paths"][template][method]
        status = str(response.status_code)
        assert status in operation["responses"], f"{method} {template}: {status} undocumented"
        spec = operation["responses"][status]
        self.seen.add((template, method, status))
        if "content" not in spec:
            assert not response.content, f"{method} {template} {status}: unexpected body"
            return
        media = response.headers["content-type"].split(";")[0].strip()
        assert media in spec["content"], f"{method} {template} {status}: {media} undocumented"
        if media == "text/plain":
            return
        pointer = _pointer(template, method, status, media)
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"{DOC_URI}#{pointer}"}, registry=self.registry,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )  # fmt: skip
        validator.validate(response.json())


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(template: str, method: str, status: str, media: str) -> str:
    parts = ["paths", template, method, "responses", status, "content", media, "schema"]
    return "/" + "/".join(_escape(part) for part in parts)


async def fetch_document(api: Api) -> dict[str, Any]:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def app_templates(api: Api) -> set[tuple[str, str]]:
    """Every (path template, method) the running app routes, in OpenAPI spelling."""
    app = api.service.http.app
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        template = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        out |= {(template, m.lower()) for m in rule.methods or () if m not in {"HEAD", "OPTIONS"}}
    return out


class TestDocument:
    async def test_is_openapi_31_covering_every_route(self, api: Api) -> None:
        """The document is OpenAPI 3.1 and lists every route the app serves."""
        document = await fetch_document(api)
        assert document["openapi"].startswith("3.1")
        documented = {(path, m) for path, ops in document["paths"].items() for m in ops
                      if m != "parameters"}  # fmt: skip
        assert app_templates(api) <= documented
        for path in ("/healthz", "/readyz", "/metrics", "/v1/events"):
            assert path in document["paths"]

    async def test_no_default_responses(self, api: Api) -> None:
        """Every status is listed: a `default` response would make any status conform."""
        document = await fetch_document(api)
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if method != "parameters":
                    assert "default" not in operation["responses"], (method, path)

    async def test_schemas_are_valid_json_schema(self, api: Api) -> None:
        """Every component schema is a valid JSON Schema 2020-12."""
        document = await fetch_document(api)
        for schema in document["components"]["schemas"].values():
            jsonschema.Draft202012Validator.check_schema(schema)


ITEM = "/v1/items/{item_id}"
USER = "/v1/users/{user_id}/recommendations"
SIMILAR = "/v1/items/{item_id}/similar"
POPULAR = "/v1/items/popular"


def calls(api: Api) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(template, method, path, httpx arguments) for a success and the errors of each route."""
    auth, wrong = {"headers": api.auth}, {"headers": {"Authorization": "Bearer wrong"}}
    return [
        ("/healthz", "GET", "/healthz", {}), ("/readyz", "GET", "/readyz", {}),
        ("/metrics", "GET", "/metrics", {}), ("/openapi.json", "GET", "/openapi.json", {}),
        (ITEM, "PUT", "/v1/items/n", {"json": {"title": "N"}, **auth}),
        (ITEM, "PUT", "/v1/items/n", {"json": {"title": "N"}, **auth}),
        (ITEM, "PUT", "/v1/items/n", {"json": {"title": 1}, **auth}),
        (ITEM, "PUT", "/v1/items/n", {"content": b"{", **auth}),
        (ITEM, "PUT", "/v1/items/n", {"json": {"title": "N"}}),
        (ITEM, "PUT", "/v1/items/n", {"json": {"title": "N"}, **wrong}),
        (ITEM, "GET", "/v1/items/a", {}), (ITEM, "GET", "/v1/items/missing", {}),
        (ITEM, "DELETE", "/v1/items/n", auth), (ITEM, "DELETE", "/v1/items/missing", auth),
        ("/v1/items", "POST", "/v1/items", {"json": {"items": [item("c")]}, **auth}),
        ("/v1/items", "POST", "/v1/items", {"json": {"items": [{}]}, **auth}),
        (USER, "GET", "/v1/users/u/recommendations", {}),
        (USER, "GET", "/v1/users/u/recommendations?limit=0", {}),
        (SIMILAR, "GET", "/v1/items/a/similar", {}), (SIMILAR, "GET", "/v1/items/zz/similar", {}),
        (POPULAR, "GET", "/v1/items/popular?genre=Drama", {}),
        (POPULAR, "GET", "/v1/items/popular?limit=x", {}),
    ]  # fmt: skip


class TestConformance:
    async def test_real_responses_match(self, api: Api) -> None:
        """Successes and problems of every reachable endpoint match the document."""
        conformance = Conformance(await fetch_document(api))
        for template, method, path, kwargs in calls(api):
            response = await api.client.request(method, path, **kwargs)
            conformance.check(template, response)
        if ("/v1/events", "post") in app_templates(api):
            await self._check_events(api, conformance)
        statuses = {s for _, _, s in conformance.seen}
        assert {"200", "201", "204", "400", "401", "403", "404", "422"} <= statuses

    async def _check_events(self, api: Api, conformance: Conformance) -> None:
        """POST /v1/events, once another module serves it: success, 401 and 422."""
        event = {"event_id": "e1", "user_id": "u", "item_id": "a",
                 "occurred_at": "2024-01-01T00:00:00Z"}  # fmt: skip
        for body, headers in (
            ({"events": [event]}, api.auth),
            ({"events": [event]}, {}),
            ({"events": [{"event_id": 1}]}, api.auth),
        ):
            response = await api.client.post("/v1/events", json=body, headers=headers)
            conformance.check("/v1/events", response)
