"""What ``reco dev`` prints once the service is up: the development token and example calls.

The banner goes to stdout as plain text, not as a log line: the token is for this
development process only (generated when ``RECO_API_TOKENS`` is empty, never in
production), and log lines carry no secret.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sys
from typing import TextIO

import anyio
import anyio.abc
import attrs

from reco.lifecycle import Stop
from reco_dev.devstack import demo

TOKEN_BYTES = 32  # token_urlsafe(32): 43 characters, above the production minimum of 32


def development_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


@attrs.frozen
class Examples:
    """The ids the example calls use."""

    user_id: str
    similar_to: str
    to_watch: str
    watched_at: str  # RFC 3339: the POST example's occurred_at

    @classmethod
    def of(cls, data: demo.DemoData, now: dt.datetime) -> Examples:
        user = demo.example_user(data)
        at = now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return cls(user, demo.most_watched_by(data, user), demo.unwatched_favourite(data, user), at)


def banner(base_url: str, token: str | None, examples: Examples | None, summary: str) -> str:
    """The text printed once the service is ready (pure: tests read it back)."""
    token_line = (
        f"  development API token (this process only): {token}"
        if token
        else "  API token: one of RECO_API_TOKENS"
    )
    if examples is None:
        return "\n".join([
            "", f"reco dev is up on {base_url}: {summary}", token_line,
            "  (`reco dev --demo` seeds an empty database with a demo catalogue and history)", "",
        ])  # fmt: skip
    auth = f"Authorization: Bearer {token}" if token else "Authorization: Bearer $TOKEN"
    event = {
        "event_id": f"demo-try-{examples.user_id}-{examples.to_watch}",
        "user_id": examples.user_id, "item_id": examples.to_watch,
        "occurred_at": examples.watched_at, "watched_seconds": 3600, "completed": True,
    }  # fmt: skip
    body = json.dumps({"events": [event]}, separators=(",", ":"))
    recs = f"curl -s '{base_url}/v1/users/{examples.user_id}/recommendations?limit=5'"
    return "\n".join([
        "",
        f"reco demo is up on {base_url}: {summary}",
        token_line,
        "",
        f"  # {examples.user_id}'s recommendations, each with its reason:",
        f"  {recs}",
        f"  # items watched together with {examples.similar_to}:",
        f"  curl -s '{base_url}/v1/items/{examples.similar_to}/similar?limit=5'",
        f"  # {examples.user_id} watches {examples.to_watch}; a second later the list has changed:",
        f"  curl -s -X POST -H '{auth}' -H 'Content-Type: application/json' \\",
        f"       -d '{body}' {base_url}/v1/events && sleep 2 && {recs}",
        "",
    ])  # fmt: skip


@attrs.define(eq=False)
class Welcome:
    """Started last by the supervisor: prints the banner once everything before it is ready."""

    text: str
    stream: TextIO | None = None
    name: str = "welcome"

    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None:
        print(self.text, file=self.stream or sys.stdout, flush=True)
        task_status.started()
        await stop.wait()
