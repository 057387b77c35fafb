"""RFC 9457 problem details: every error answer is ``application/problem+json``."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from quart import Response

PROBLEM_TYPE_BASE = "https://reco.example/problems/"
CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise from a handler to answer with a problem document."""

    def __init__(
        self, status: int, detail: str, *, slug: str | None = None,
        headers: dict[str, str] | None = None, **extensions: Any,
    ) -> None:  # fmt: skip
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or HTTPStatus(status).phrase.lower().replace(" ", "-")
        self.headers = headers or {}
        self.extensions = extensions


def problem_response(problem: Problem) -> Response:
    body = {
        "type": PROBLEM_TYPE_BASE + problem.slug,
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
        **problem.extensions,
    }
    response = Response(json.dumps(body), status=problem.status, content_type=CONTENT_TYPE)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response
