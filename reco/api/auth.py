"""Bearer-token authentication for the write endpoints.

Tokens come from ``RECO_API_TOKENS`` (several, so that they can be rotated).
A request without credentials answers 401 with ``WWW-Authenticate: Bearer``
(RFC 6750); one with a token that matches none answers 403. The presented
token is compared with every configured one in constant time, and the loop
never stops early, so the timing says nothing about which token is close.

Use :func:`require_token` as a decorator on a Quart view::

    @blueprint.post("/v1/events")
    @require_token()
    async def post_events() -> Response: ...
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import ParamSpec, TypeVar

from quart import request

from reco.api.problems import Problem
from reco.api.state import state

P = ParamSpec("P")
R = TypeVar("R")

REALM = "reco"


def _challenge(error: str | None = None) -> dict[str, str]:
    value = f'Bearer realm="{REALM}"'
    if error is not None:
        value += f', error="{error}"'
    return {"WWW-Authenticate": value}


def presented_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; 401 when there is none."""
    if not authorization:
        raise Problem(401, "this endpoint needs an Authorization: Bearer <token> header",
                      headers=_challenge())  # fmt: skip
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "the Authorization header must be 'Bearer <token>'",
                      headers=_challenge("invalid_request"))  # fmt: skip
    return token


def token_matches(token: str, tokens: Sequence[str]) -> bool:
    """True when ``token`` equals one of ``tokens``; constant time over all of them."""
    presented = token.encode()
    matched = False
    for candidate in tokens:
        matched |= hmac.compare_digest(presented, candidate.encode())
    return matched


def check_token(authorization: str | None, tokens: Sequence[str]) -> None:
    """Raise the 401 or 403 problem unless ``authorization`` carries a configured token."""
    if not token_matches(presented_token(authorization), tokens):
        raise Problem(403, "the bearer token is not valid for this service",
                      headers=_challenge("invalid_token"))  # fmt: skip


def authorize_request() -> None:
    """Check the current request's bearer token against the configured tokens."""
    check_token(request.headers.get("Authorization"), state().settings.http.api_tokens)


def require_token() -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """A decorator for views that need a bearer token (401/403 problem otherwise)."""

    def decorate(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(view)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            authorize_request()
            return await view(*args, **kwargs)

        return guarded

    return decorate


async def require_bearer() -> None:
    """A ``before_request`` hook for blueprints whose every route needs a token."""
    authorize_request()
