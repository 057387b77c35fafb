"""Secrets out of sight: a DSN's password and the API tokens never reach a log line or a repr."""

from __future__ import annotations

import re

REDACTED = "***"
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***``, fit for a log line or an error.

    Handles the URL form (``user:password@`` userinfo, several hosts, and a
    ``password=`` query parameter) and the libpq keyword form
    (``host=... password=...``, quoted or not). Everything else is kept as
    written. When in doubt (an unencoded ``@``, ``/`` or ``?`` in the
    password) it redacts more, never less: everything up to the last ``@`` is
    userinfo.
    """
    if "://" not in dsn:
        return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + REDACTED, dsn)
    scheme, _, rest = dsn.partition("://")
    userinfo, at, rest = rest.rpartition("@")
    if ":" in userinfo:
        userinfo = f"{userinfo.partition(':')[0]}:{REDACTED}"
    rest = _QUERY_PASSWORD.sub(lambda m: m.group(1) + REDACTED, rest)
    return f"{scheme}://{userinfo}{at}{rest}"


def redacted_dsn(value: str) -> str:
    return repr(redact_dsn(value))


def redacted_tokens(value: tuple[str, ...]) -> str:
    return repr((REDACTED,) * len(value))
