"""Pure HTTP input validation: parameters, JSON bodies, item batches."""

from __future__ import annotations

from typing import Any

import pytest

from reco.api import validation
from reco.api.problems import Problem
from reco.db.queries.items import Item


def problem_of(call: Any, *args: Any, **kwargs: Any) -> Problem:
    with pytest.raises(Problem) as caught:
        call(*args, **kwargs)
    return caught.value


class TestLimit:
    def test_absent_is_default(self) -> None:
        """No limit parameter means the default of 10."""
        assert validation.limit(None) == 10

    @pytest.mark.parametrize(("raw", "value"), [("1", 1), ("100", 100), (" 7 ", 7)])
    def test_in_range(self, raw: str, value: int) -> None:
        """Integers from 1 to 100 are accepted."""
        assert validation.limit(raw) == value

    @pytest.mark.parametrize("raw", ["0", "101", "-1", "1.5", "ten", "", "1e2", "٣", "9" * 50])
    def test_rejected_with_400(self, raw: str) -> None:
        """Anything else is a 400 naming limit."""
        problem = problem_of(validation.limit, raw)
        assert problem.status == 400
        assert problem.detail.startswith("limit:")


class TestIdentifiersAndFilters:
    def test_identifier_length(self) -> None:
        """Ids are 1 to 128 characters."""
        assert validation.identifier("x" * 128, "user_id") == "x" * 128
        assert problem_of(validation.identifier, "x" * 129, "user_id").status == 400
        assert problem_of(validation.identifier, "", "user_id").status == 400

    def test_unknown_params_named(self) -> None:
        """Unknown query parameters are named; known ones pass."""
        validation.known_params(["limit"], frozenset({"limit", "genre"}))
        problem = problem_of(validation.known_params, ["limt", "x"], frozenset({"limit"}))
        assert "limt, x" in problem.detail

    def test_filter_values_deduplicated_in_order(self) -> None:
        """Repeated filter values are kept once, first occurrence first."""
        assert validation.filter_values(["b", "a", "b"], "genre") == ("b", "a")

    def test_too_many_filter_values(self) -> None:
        """More than 500 values of one parameter is a 400."""
        values = [str(i) for i in range(501)]
        assert "exclude" in problem_of(validation.filter_values, values, "exclude").detail

    @pytest.mark.parametrize("value", ["popular", "a/b", "", "x" * 129, 5, None, "\x00", "\ud800"])
    def test_item_id_problem(self, value: object) -> None:
        """Reserved, slashed, empty, long or non-string ids cannot be written."""
        assert validation.item_id_problem(value) is not None

    def test_item_id_ok(self) -> None:
        """An ordinary id is fine."""
        assert validation.item_id_problem("tt0114709") is None


USER_RULE = "/v1/users/<user_id>/recommendations"


class TestUrlText:
    @pytest.mark.parametrize("segment", [b"a%00b", b"a%ED%A0%80", b"%FF", b"%C3", b"a\xff"])
    def test_bad_path_segment_names_the_parameter(self, segment: bytes) -> None:
        """NUL, an encoded surrogate or undecodable UTF-8 in a segment: 400 naming it."""
        raw = b"/v1/users/" + segment + b"/recommendations"
        problem = problem_of(validation.url_text, raw, USER_RULE, b"")
        assert problem.status == 400
        assert problem.detail == f"user_id: {validation.TEXT_RULE}"

    @pytest.mark.parametrize("query", [b"genre=%00", b"limit=1&exclude=%ED%A0%80", b"genre=%FF"])
    def test_bad_query_value_names_the_parameter(self, query: bytes) -> None:
        """The same in a query value: 400 naming the parameter."""
        problem = problem_of(validation.url_text, b"/v1/items/popular", None, query)
        assert problem.detail.split(":")[0] in {"genre", "exclude"}

    def test_bad_query_name(self) -> None:
        """An unstorable parameter name is a 400 too."""
        problem = problem_of(validation.url_text, b"/", None, b"a%00=1")
        assert problem.detail.startswith("a query parameter name")

    def test_unmatched_path_is_named_path(self) -> None:
        """Without a matched route, the detail names the path."""
        assert problem_of(validation.url_text, b"/x/%00", None, b"").detail.startswith("path:")

    def test_ordinary_text_passes(self) -> None:
        """UTF-8 without NUL passes, in the path and in the query (plus is a space)."""
        raw = b"/v1/users/%C3%A9t%C3%A9/recommendations"
        validation.url_text(raw, USER_RULE, b"genre=%E2%9C%93+x&exclude=a%2Bb&flag")

    @pytest.mark.parametrize("value", ["a\x00", "a\udc80"])
    def test_identifier_refuses_unstorable_text(self, value: str) -> None:
        """An id with NUL or a lone surrogate is a 400 naming it (a second line of defence)."""
        assert problem_of(validation.identifier, value, "user_id").detail.startswith("user_id:")


class TestJsonBody:
    @pytest.mark.parametrize("raw", [b"", b"  ", b"{", b"NaN", b'{"a": Infinity}', b"\xff"])
    def test_not_json_is_400(self, raw: bytes) -> None:
        """Empty, malformed or non-standard JSON is a 400."""
        assert problem_of(validation.json_body, raw).status == 400

    def test_deep_nesting_is_400(self) -> None:
        """Nesting deep enough to exhaust recursion is a 400, not a crash."""
        assert problem_of(validation.json_body, b"[" * 100_000).status == 400

    @pytest.mark.parametrize(
        "raw", [b"1" * 5000, b"[" + b"9" * 309 + b"]", b"[1e999]", b'{"a": -1E400}']
    )
    def test_numbers_beyond_a_double_are_400(self, raw: bytes) -> None:
        """A 5000-digit integer, more than 308 digits, or an overflowing float: 400."""
        assert problem_of(validation.json_body, raw).status == 400

    def test_largest_numbers_pass(self) -> None:
        """308 digits and 1.7e308 are still numbers we hold."""
        assert validation.json_body(b"[" + b"9" * 308 + b", 1.7e308]")[1] == 1.7e308

    def test_nesting_is_bounded(self) -> None:
        """64 levels decode; 65 are a 400 naming the bound."""
        depth = validation.MAX_JSON_DEPTH
        assert validation.json_body(b"[" * depth + b"]" * depth)
        problem = problem_of(validation.json_body, b"[" * (depth + 1) + b"]" * (depth + 1))
        assert f"{depth} levels" in problem.detail

    def test_object(self) -> None:
        """A JSON object decodes."""
        assert validation.json_body(b'{"title": "T"}') == {"title": "T"}


def errors_of(call: Any, *args: Any) -> list[dict[str, str]]:
    problem = problem_of(call, *args)
    assert problem.status == 422
    errors: list[dict[str, str]] = problem.extensions["errors"]
    return errors


class TestItemBody:
    def test_defaults(self) -> None:
        """Only title is required; active defaults to true."""
        assert validation.item_body({"title": "T"}, "i") == Item("i", "T", (), True, {})

    def test_full(self) -> None:
        """Every field is carried over; duplicate genres are kept once."""
        body = {"title": "T", "genres": ["A", "B", "A"], "active": False, "attributes": {"y": 1}}
        assert validation.item_body(body, "i") == Item("i", "T", ("A", "B"), False, {"y": 1})

    def test_not_an_object(self) -> None:
        """A list body is a 422 at the root."""
        assert errors_of(validation.item_body, [], "i")[0]["pointer"] == ""

    def test_every_problem_listed(self) -> None:
        """Unknown fields and every bad field are listed together."""
        body = {"title": "", "genres": [1], "active": 1, "attributes": "x", "extra": 1}
        pointers = [e["pointer"] for e in errors_of(validation.item_body, body, "i")]
        assert pointers == ["", "/title", "/genres/0", "/active", "/attributes"]

    def test_unknown_fields_named(self) -> None:
        """Unknown field names appear in the detail."""
        problem = problem_of(validation.item_body, {"title": "T", "zeta": 1, "alpha": 2}, "i")
        assert "alpha, zeta" in problem.detail

    def test_item_id_not_allowed_in_put_body(self) -> None:
        """The id comes from the path; an item_id field in a PUT body is unknown."""
        assert (
            "item_id"
            in problem_of(validation.item_body, {"title": "T", "item_id": "x"}, "i").detail
        )

    @pytest.mark.parametrize("text", ["a\x00", "\ud800", "x\udfff"])
    def test_unstorable_text_in_every_field(self, text: str) -> None:
        """NUL or a lone surrogate in the title, a genre, an attribute key or value: 422 each."""
        body = {"title": text, "genres": ["ok", text],
                "attributes": {text: 1, "k": [{"deep": text}]}}  # fmt: skip
        pointers = [e["pointer"] for e in errors_of(validation.item_body, body, "i")]
        assert pointers[:2] == ["/title", "/genres/1"]
        assert "/attributes/k/0/deep" in pointers
        assert len(pointers) == 4  # and the key

    def test_attributes_depth_is_bounded(self) -> None:
        """Attributes nest at most MAX_ATTRIBUTES_DEPTH levels (the object itself is one)."""
        nested: Any = "leaf"
        for _ in range(validation.MAX_ATTRIBUTES_DEPTH - 1):
            nested = [nested]
        assert validation.item_body({"title": "T", "attributes": {"a": nested}}, "i")
        errors = errors_of(validation.item_body, {"title": "T", "attributes": {"a": [nested]}}, "i")
        assert errors[0]["detail"].startswith("attributes nest at most")


class TestBatchBody:
    def test_items(self) -> None:
        """A batch yields one Item per entry, in order."""
        body = {"items": [{"item_id": "a", "title": "A"}, {"item_id": "b", "title": "B"}]}
        assert [i.item_id for i in validation.batch_body(body)] == ["a", "b"]

    @pytest.mark.parametrize(
        "body", [{}, {"items": {}}, {"items": []}, {"items": [{}] * 3, "x": 1}, [], "items"]
    )
    def test_malformed(self, body: object) -> None:
        """A missing, empty or non-list items field, or a non-object body, is a 422."""
        assert errors_of(validation.batch_body, body)

    def test_over_the_maximum(self) -> None:
        """More than max_items entries is a 422 naming the count."""
        body = {"items": [{"item_id": str(i), "title": "T"} for i in range(4)]}
        problem = problem_of(validation.batch_body, body, max_items=3)
        assert problem.status == 422
        assert "got 4" in problem.detail

    def test_entry_errors_have_pointers(self) -> None:
        """Errors inside entries point at the entry and field."""
        body = {"items": [{"item_id": "a", "title": "A"}, {"title": "B"}, 3]}
        pointers = [e["pointer"] for e in errors_of(validation.batch_body, body)]
        assert pointers == ["/items/1/item_id", "/items/2"]
