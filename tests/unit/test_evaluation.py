"""Evaluation pieces without a database: file reading, the split, metrics, baselines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from reco.evaluation import baselines, data, metrics
from reco.evaluation.progress import Progress


class TestReading:
    def test_recbole_header_and_tabs(self, tmp_path: Path) -> None:
        path = tmp_path / "x.inter"
        path.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                        "1\t10\t3\t100\n2\t20\t5\t50\n")  # fmt: skip
        assert data.read_ratings(path) == [data.Rating("1", "10", 100.0),
                                           data.Rating("2", "20", 50.0)]  # fmt: skip

    def test_movielens_double_colon_without_header(self, tmp_path: Path) -> None:
        path = tmp_path / "ratings.dat"
        path.write_text("1::10::3::100\n")
        assert data.read_ratings(path) == [data.Rating("1", "10", 100.0)]

    def test_bad_line_names_the_line(self, tmp_path: Path) -> None:
        path = tmp_path / "x.csv"
        path.write_text("1,10,3,100\n1,11,3,soon\n")
        with pytest.raises(ValueError, match=r"x\.csv:2"):
            data.read_ratings(path)

    def test_items_file_titles_and_genres(self, tmp_path: Path) -> None:
        path = tmp_path / "x.item"
        path.write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                        "1\tToy Story\t1995\tAnimation Children's Comedy\n")  # fmt: skip
        assert data.read_items(path) == [
            data.Item("1", "Toy Story", ("Animation", "Children's", "Comedy"))
        ]


class TestSplit:
    def test_most_recent_fifth_is_held_out_per_user(self) -> None:
        ratings = [data.Rating("u", str(i), float(10 - i)) for i in range(10)]
        ratings.append(data.Rating("short", "x", 1.0))
        split = data.split(ratings)
        assert split.test == {"u": ["1", "0"]}  # the two latest timestamps
        assert [r.item_id for r in split.train["u"]] == ["9", "8", "7", "6", "5", "4", "3", "2"]
        assert "short" in split.train  # too few to hold out: trains only

    def test_replay_order_is_global_time_order(self) -> None:
        train = {"a": [data.Rating("a", "1", 5.0)], "b": [data.Rating("b", "2", 1.0)]}
        assert [r.item_id for r in data.replay_order(train)] == ["2", "1"]


class TestMetrics:
    def test_perfect_and_empty_lists(self) -> None:
        test = {"u": ["a", "b"], "v": ["c"]}
        perfect = metrics.evaluate({"u": ["b", "a"], "v": ["c"]}, test, catalogue_size=10)
        assert (perfect.recall, perfect.ndcg, perfect.covered) == (1.0, 1.0, 3)
        assert metrics.evaluate({}, test, catalogue_size=10).recall == 0.0

    def test_ndcg_rewards_early_hits(self) -> None:
        early = metrics.ndcg_at(["a", "x"], {"a"}, 10)
        late = metrics.ndcg_at(["x", "a"], {"a"}, 10)
        assert early == 1.0
        assert late < early


class TestBaselines:
    def test_most_popular_skips_seen_items(self) -> None:
        train = {"u": [data.Rating("u", "a", 1)], "v": [data.Rating("v", "a", 1),
                                                     data.Rating("v", "b", 2)]}  # fmt: skip
        assert baselines.most_popular(train, ["u", "v"]) == {"u": ["b"], "v": []}

    def test_every_baseline_reports_a_list_or_a_reason(self) -> None:
        train = {f"u{k}": [data.Rating(f"u{k}", str((k + i) % 7), float(i)) for i in range(4)]
                 for k in range(12)}  # fmt: skip
        found = baselines.run_all(train, sorted(train))
        assert found[0].name == "most popular"
        assert len(found) == 3
        assert all((b.lists is None) == bool(b.error) for b in found)


class TestProgress:
    def test_plain_lines_when_not_a_terminal(self) -> None:
        out = io.StringIO()
        progress = Progress("replay", 100, out)
        for _ in range(100):
            progress.advance()
        progress.close()
        lines = out.getvalue().splitlines()
        assert lines[0] == "replay: 10/100"
        assert len(lines) == 11
        assert lines[-1].startswith("replay: 100/100 in ")
