"""Bearer-token authentication for the write endpoints.

``Authorization: Bearer <token>`` against ``settings.api_tokens``: no (or a
malformed) header answers 401 with ``WWW-Authenticate: Bearer``, a token that
matches none answers 403. Tokens are compared in constant time, against every
configured token, so the answer time says nothing about which one nearly
matched.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from quart import request

from reco.api.problems import Problem
from reco.api.state import state


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def token_matches(token: str, tokens: Iterable[str]) -> bool:
    """Constant-time comparison against every configured token."""
    candidate = token.encode()
    matched = False
    for known in tokens:
        matched |= hmac.compare_digest(candidate, known.encode())
    return matched


def check_bearer(header: str | None, tokens: Iterable[str]) -> None:
    """Raise the 401 or 403 :class:`Problem` unless ``header`` carries a known token."""
    token = bearer_token(header)
    if token is None:
        raise Problem(
            401, "this endpoint needs an 'Authorization: Bearer <token>' header",
            slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="reco"'},
        )  # fmt: skip
    if not token_matches(token, tokens):
        raise Problem(403, "the bearer token is not accepted", slug="forbidden")


async def require_bearer() -> None:
    """A ``before_request`` hook for blueprints whose every route needs a token."""
    check_bearer(request.headers.get("Authorization"), state().settings.api_tokens)
