"""Bearer-token checks: 401 without credentials, 403 with a wrong token."""

from __future__ import annotations

import pytest

from reco.api.auth import check_token, presented_token, token_matches
from reco.api.problems import Problem

TOKENS = ("first-token-abcdefghijklmnopqrstuvwxyz", "second-token-abcdefghijklmnopqrstuvw")


class TestCheckToken:
    @pytest.mark.parametrize("token", TOKENS)
    def test_any_configured_token_passes(self, token: str) -> None:
        """Each configured token is accepted (rotation keeps several)."""
        check_token(f"Bearer {token}", TOKENS)

    def test_scheme_is_case_insensitive(self) -> None:
        """'bearer' in any case is the bearer scheme."""
        check_token(f"bEaReR {TOKENS[0]}", TOKENS)

    @pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   ", "Token x"])
    def test_missing_or_malformed_is_401(self, header: str | None) -> None:
        """No usable bearer credentials is a 401 with a Bearer challenge."""
        with pytest.raises(Problem) as caught:
            check_token(header, TOKENS)
        assert caught.value.status == 401
        assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")

    @pytest.mark.parametrize("token", ["wrong", TOKENS[0][:-1], TOKENS[0] + "x"])
    def test_wrong_token_is_403(self, token: str) -> None:
        """A token that matches none is a 403."""
        with pytest.raises(Problem) as caught:
            check_token(f"Bearer {token}", TOKENS)
        assert caught.value.status == 403

    def test_no_tokens_configured_rejects_all(self) -> None:
        """With no tokens configured, every write is refused."""
        assert not token_matches("anything", ())

    def test_presented_token(self) -> None:
        """The token is what follows the scheme, trimmed."""
        assert presented_token("Bearer  abc ") == "abc"
