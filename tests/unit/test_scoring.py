"""The pure scoring module: filtering, cold start, blending, reasons, determinism."""

from __future__ import annotations

import math
import random

import pytest

from reco.engine import scoring
from reco.engine.scoring import ItemInfo, Neighbours, Request

# Every info() made, by item id: the item-id -> ItemInfo mapping scoring reads
# neighbours' infos from (a test that makes the same id twice keeps the last).
ITEMS: dict[str, ItemInfo] = {}


def info(item_id: str, *, genres: tuple[str, ...] = ("Drama",), users: int = 10,
         log_score: float = 0.0) -> ItemInfo:  # fmt: skip
    made = ItemInfo(item_id, f"Title {item_id}", frozenset(genres), users, log_score)
    ITEMS[item_id] = made
    return made


def neighbours_of(seed: str, *pairs: tuple[ItemInfo, float], seed_users: int = 10
                  ) -> dict[str, Neighbours]:  # fmt: skip
    return {seed: scoring.normalise(seed_users, pairs)}


def recommend(history: list[str], neighbours: dict[str, Neighbours],
              trending: list[ItemInfo], request: Request) -> list[scoring.ScoredItem]:  # fmt: skip
    return scoring.recommend(history, neighbours, ITEMS, trending, request)


TRENDING = [info(f"t{i}", log_score=-i, genres=("Comedy",) if i % 2 else ("Drama",))
            for i in range(20)]  # fmt: skip


def ids(items: list[scoring.ScoredItem]) -> list[str]:
    return [s.item_id for s in items]


class TestFiltering:
    def test_seen_items_are_never_recommended(self) -> None:
        """An item in the history is dropped even when it is a strong neighbour."""
        nb = neighbours_of("a", (info("b"), 5.0), (info("c"), 1.0))
        got = recommend(["a", "b"], nb, TRENDING, Request(5))
        assert "b" not in ids(got)
        assert "a" not in ids(got)
        assert ids(got)[0] == "c"

    def test_seen_trending_items_are_not_filled_in(self) -> None:
        """Fill skips items the user watched."""
        got = recommend(["t0", "t1"], {}, TRENDING, Request(3))
        assert ids(got) == ["t2", "t3", "t4"]

    def test_inactive_items_are_never_recommended(self) -> None:
        """Inactive neighbours and inactive trending items are both dropped."""
        nb = neighbours_of("a", (info("b"), 5.0), (info("c"), 1.0))
        got = recommend(["a"], nb, TRENDING, Request(4, inactive=frozenset({"b", "t0"})))
        assert ids(got) == ["c", "t1", "t2", "t3"]

    def test_genre_filter_keeps_matching_items_only(self) -> None:
        """With genres given, every item has one of them."""
        nb = neighbours_of("a", (info("b", genres=("Comedy",)), 5.0), (info("c"), 9.0))
        got = recommend(["a"], nb, TRENDING, Request(4, genres=frozenset({"Comedy"})))
        assert ids(got) == ["b", "t1", "t3", "t5"]

    def test_excluded_items_are_skipped(self) -> None:
        """exclude= drops items from both the personal part and the fill."""
        nb = neighbours_of("a", (info("b"), 5.0), (info("c"), 1.0))
        got = recommend(["a"], nb, TRENDING, Request(3, exclude=frozenset({"b", "t0"})))
        assert ids(got) == ["c", "t1", "t2"]


class TestColdStart:
    def test_user_without_history_gets_trending(self) -> None:
        """No history: the trending list, each with a trending reason."""
        got = recommend([], {}, TRENDING, Request(3))
        assert ids(got) == ["t0", "t1", "t2"]
        assert {s.reason.type for s in got} == {"trending"}

    def test_short_personal_list_is_filled_to_the_limit(self) -> None:
        """One neighbour, limit 4: the rest comes from trending."""
        got = recommend(["a"], neighbours_of("a", (info("b"), 1.0)), TRENDING, Request(4))
        assert ids(got) == ["b", "t0", "t1", "t2"]

    def test_fewer_than_limit_only_when_items_run_out(self) -> None:
        """The list is short only when nothing allowed is left."""
        got = recommend([], {}, TRENDING[:2], Request(5))
        assert ids(got) == ["t0", "t1"]

    def test_scores_do_not_increase_down_the_list(self) -> None:
        got = recommend(["a"], neighbours_of("a", (info("b"), 1.0)), TRENDING, Request(6))
        scores = [s.score for s in got]
        assert scores == sorted(scores, reverse=True)


class TestPersonal:
    def test_reason_names_the_seed_that_contributed_most(self) -> None:
        """because_you_watched carries the seed item id."""
        nb = {
            **neighbours_of("a", (info("x"), 1.0)),
            **neighbours_of("b", (info("x"), 8.0), (info("y"), 2.0)),
        }
        got = recommend(["a", "b"], nb, [], Request(2))
        assert got[0].item_id == "x"
        assert got[0].reason == scoring.Reason("because_you_watched", "b")

    def test_recent_seeds_weigh_more(self) -> None:
        """Equal co-occurrence: the neighbour of the latest watch ranks first."""
        nb = {**neighbours_of("new", (info("n"), 1.0)), **neighbours_of("old", (info("o"), 1.0))}
        assert ids(recommend(["new", "old"], nb, [], Request(2))) == ["n", "o"]

    def test_popular_neighbours_are_normalised_down(self) -> None:
        """Same raw weight: the item fewer users watched is the stronger signal."""
        nb = neighbours_of(
            "a", (info("blockbuster", users=1000), 5.0), (info("niche", users=5), 5.0)
        )
        assert ids(recommend(["a"], nb, [], Request(2))) == ["niche", "blockbuster"]

    def test_only_the_latest_seeds_count(self) -> None:
        """Items watched before the last SEEDS distinct ones are no seeds."""
        history = [f"h{i}" for i in range(scoring.SEEDS + 1)]
        nb = neighbours_of(history[-1], (info("z"), 1.0))
        assert recommend(history, nb, [], Request(1)) == []

    def test_trending_blend_helps_sparse_users_more(self) -> None:
        """A trending candidate overtakes a slightly stronger personal one for a sparse user."""
        nb = neighbours_of("a", (info("p", log_score=-10.0), 1.0), (info("q", log_score=0.0), 0.9))
        trending = [info("q", log_score=0.0)]
        assert ids(recommend(["a"], nb, trending, Request(2)))[0] == "q"
        heavy = ["a", *(f"h{i}" for i in range(200))]
        assert ids(recommend(heavy, nb, trending, Request(2)))[0] == "p"


class TestTopK:
    def test_neighbour_without_info_is_skipped(self) -> None:
        """A neighbour the item mapping does not know is never served (nothing to show)."""
        nb = neighbours_of("a", (info("b"), 1.0))
        nb["a"] = {"ghost": 5.0, **nb["a"]}
        assert ids(recommend(["a"], nb, [], Request(3))) == ["b"]

    def test_pruned_ranking_equals_the_full_ranking(self) -> None:
        """Scoring only the candidates that can reach the top gives the full sort's top."""
        rng = random.Random(5)
        others = [info(f"c{i}", log_score=-rng.random() * 4) for i in range(120)]
        seeds = [f"s{i}" for i in range(scoring.SEEDS)]
        nb: dict[str, Neighbours] = {}
        for seed in seeds:
            nb |= neighbours_of(seed, *((o, rng.uniform(1, 9)) for o in rng.sample(others, 40)))
        trending = sorted(others, key=lambda i: -i.log_score)
        got = recommend(seeds, nb, trending, Request(10))
        assert [(s.item_id, s.score) for s in got] == reference_top(seeds, nb, trending, 10)


def reference_top(history: list[str], nb: dict[str, Neighbours], trending: list[ItemInfo],
                  limit: int) -> list[tuple[str, float]]:  # fmt: skip
    """Every candidate scored and sorted: the model in the module docstring, written plainly."""
    totals: dict[str, float] = {}
    for k, seed in enumerate(history[: scoring.SEEDS]):
        for item_id, weight in nb.get(seed, {}).items():
            totals[item_id] = totals.get(item_id, 0.0) + scoring.RECENCY**k * weight
    top_p, top_t = max(totals.values()), trending[0].log_score
    weight = scoring.BLEND * scoring.PRIOR / (scoring.PRIOR + len(set(history)))
    scored = [(i, p / top_p + weight * math.exp(min(ITEMS[i].log_score - top_t, 0.0)))
              for i, p in totals.items()]  # fmt: skip
    return sorted(scored, key=lambda x: (-x[1], x[0]))[:limit]


class TestDeterminism:
    def test_same_state_gives_the_same_list(self) -> None:
        """Ties break by item id, so input order does not matter."""
        pairs = [(info(c), 1.0) for c in "fedcba"]
        one = recommend(["s"], neighbours_of("s", *pairs), TRENDING, Request(8))
        two = recommend(["s"], neighbours_of("s", *reversed(pairs)), TRENDING, Request(8))
        assert one == two
        assert ids(one)[:6] == ["a", "b", "c", "d", "e", "f"]


class TestSimilar:
    def test_similar_ranks_by_normalised_weight_and_skips_the_item(self) -> None:
        nb = scoring.normalise(10, [(info("b"), 1.0), (info("c"), 3.0), (info("a"), 9.0)])
        got = scoring.similar("a", nb, ITEMS, Request(5, inactive=frozenset({"x"})))
        assert ids(got) == ["c", "b"]
        assert got[0].reason == scoring.Reason("because_you_watched", "a")


@pytest.mark.parametrize(("a", "b"), [(0.0, 0.0), (-3.0, 5.0), (700.0, 701.0)])
def test_log_add_matches_the_direct_formula(a: float, b: float) -> None:
    """log_add(a, b) == log(exp(a) + exp(b)), also where exp overflows."""
    import math

    from reco.engine.aggregates import log_add

    expected = max(a, b) + math.log(1 + math.exp(-abs(a - b)))
    assert log_add(a, b) == pytest.approx(expected)


class TestTrainedModel:
    """The trained model's neighbour lists mixed with the live co-occurrence."""

    def test_trained_neighbours_reach_a_user_without_live_pairs(self) -> None:
        """No co-occurrence yet: the model's neighbours of the history rank, with a reason."""
        info("m1")
        info("m2")
        trained = {"h": {"m1": 0.5, "m2": 0.2}}
        got = scoring.recommend(["h"], {}, ITEMS, TRENDING, Request(3), trained, 0.5)
        assert ids(got)[:2] == ["m1", "m2"]
        assert got[0].reason == scoring.Reason("because_you_watched", "h")

    def test_a_new_item_still_scores_through_the_live_part(self) -> None:
        """An item the model never saw is recommended from co-occurrence alone."""
        new, old = info("brand-new", users=2), info("old")
        live = neighbours_of("h", (new, 5.0), seed_users=2)
        trained = {"h": {"old": 1.0}}
        got = ids(scoring.recommend(["h"], live, ITEMS, TRENDING, Request(2), trained, 0.5))
        assert set(got) == {"brand-new", old.item_id}

    def test_weight_zero_ignores_the_model(self) -> None:
        info("m1")
        live = neighbours_of("h", (info("c1"), 3.0))
        plain = scoring.recommend(["h"], live, ITEMS, TRENDING, Request(5))
        mixed = scoring.recommend(["h"], live, ITEMS, TRENDING, Request(5), {"h": {"m1": 9.0}}, 0)
        assert plain == mixed

    def test_model_sums_over_the_whole_recent_history(self) -> None:
        """Two history items agreeing on a candidate beat one strong vote."""
        info("both")
        info("one")
        trained = {"h1": {"both": 0.3, "one": 0.5}, "h2": {"both": 0.3}}
        got = scoring.recommend(["h1", "h2"], {}, ITEMS, TRENDING, Request(2), trained, 1.0)
        assert ids(got) == ["both", "one"]

    def test_seen_and_inactive_model_neighbours_are_skipped(self) -> None:
        info("gone")
        info("fine")
        trained = {"h": {"h2": 1.0, "gone": 0.9, "fine": 0.1}}
        request = Request(1, inactive=frozenset({"gone"}))
        got = scoring.recommend(["h", "h2"], {}, ITEMS, TRENDING, request, trained, 0.5)
        assert ids(got) == ["fine"]

    def test_mix_scales_each_part_to_its_maximum(self) -> None:
        mixed = scoring.mix({"a": 4.0, "b": 2.0}, {"b": 0.1, "c": 0.05}, 0.5, {"a", "b", "c"})
        assert mixed == pytest.approx({"a": 0.5, "b": 0.75, "c": 0.25})
