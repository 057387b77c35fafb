"""Evaluation pieces without a database: file reading, the split, metrics, baselines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from reco_dev.evaluation import baselines, data, metrics, replay
from reco_dev.evaluation.client import metric_samples, metric_total
from reco_dev.evaluation.progress import Progress
from reco_dev.evaluation.service import environment

from reco.events import parse_watch_event
from reco.settings import AppEnv, BackgroundMode, Settings, load_settings


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


class TestProtocols:
    ratings = [data.Rating("u", "1", 1.0), data.Rating("u", "2", 2.0), data.Rating("v", "1", 3.0),
               data.Rating("u", "3", 4.0), data.Rating("w", "4", 5.0), data.Rating("u", "1", 6.0)]  # fmt: skip

    def test_time_cut_trains_before_and_tests_new_items_after(self) -> None:
        """Cut at the 50th percentile (time 4): known users' first watches at or after it."""
        split = data.time_cut(self.ratings, 0.5)
        assert {u: [r.item_id for r in rows] for u, rows in split.train.items()} == {
            "u": ["1", "2"],
            "v": ["1"],
        }
        assert split.test == {"u": ["3"]}  # "1" is a re-watch; w was unknown before the cut

    def test_leave_last_out_holds_the_last_new_item(self) -> None:
        split = data.leave_last_out([*self.ratings[:5], data.Rating("u", "5", 6.0)])
        assert split.test == {"u": ["5"]}
        assert [r.item_id for r in split.train["u"]] == ["1", "2", "3"]

    def test_every_protocol_has_a_split(self) -> None:
        for protocol in data.PROTOCOLS:
            assert data.split_for(protocol.name, self.ratings).train
        with pytest.raises(ValueError, match="unknown protocol"):
            data.split_for("tomorrow", self.ratings)


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
        assert found[1].name.startswith("EASE")
        assert len(found) == 4
        assert all((b.lists is None) == bool(b.error) for b in found)

    def test_ease_recommends_what_similar_users_watched_next(self) -> None:
        """Users who watched a and b also watched c: EASE puts c first for a user with a, b."""
        train = {f"u{k}": [data.Rating(f"u{k}", i, 0.0) for i in ("a", "b", "c")]
                 for k in range(5)}  # fmt: skip
        train["new"] = [data.Rating("new", "a", 0.0), data.Rating("new", "b", 0.0)]
        train["other"] = [data.Rating("other", "d", 0.0)]
        lists = baselines.ease(train, ["new", "missing"])
        assert lists["new"][0] == "c"
        assert "a" not in lists["new"]
        assert lists["missing"] == []


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


class TestServiceEnvironment:
    def test_every_setting_survives_the_trip_through_reco_variables(self) -> None:
        """The child process loads exactly the settings the evaluation chose."""
        chosen = Settings.from_flat(
            app_env=AppEnv.TEST, api_tokens=("a" * 32, "b" * 32), consumer_enabled=True,
            migrate_on_start=True, shutdown_timeout=2.5, background_mode=BackgroundMode.DROP,
            database_url="postgresql://u@127.0.0.1:5/db",
        )  # fmt: skip
        assert load_settings(environment(chosen, {})) == chosen

    def test_inherited_reco_variables_are_replaced_and_others_kept(self) -> None:
        """A stray RECO_ variable of the caller never reaches the child; PATH does."""
        env = environment(Settings(), {"PATH": "/bin", "RECO_TYPO": "1", "APP_ENV": "production"})
        assert env["PATH"] == "/bin"
        assert "RECO_TYPO" not in env
        assert env["APP_ENV"] == "development"
        assert "RECO_MIGRATE_ON_START" not in env  # None: the child's own default


class TestReplayPieces:
    def test_metric_total_sums_every_label_set(self) -> None:
        page = (
            "# HELP reco_consumer_messages_total Watch-event messages\n"
            "# TYPE reco_consumer_messages_total counter\n"
            'reco_consumer_messages_total{outcome="processed"} 7\n'
            'reco_consumer_messages_total{outcome="duplicate"} 2.0\n'
            'reco_consumer_messages_totally{outcome="x"} 100\n'
            "reco_consumer_lag 3\n"
        )
        assert metric_total(page, "reco_consumer_messages_total") == 9.0
        assert metric_total(page, "reco_missing_total") == 0.0
        assert metric_samples(page, "reco_consumer_messages_total") == {
            'outcome="processed"': 7.0,
            'outcome="duplicate"': 2.0,
        }
        assert metric_samples(page, "reco_consumer_lag") == {"": 3.0}

    def test_events_are_valid_watch_events_with_stable_ids(self) -> None:
        """The produced JSON passes the consumer's validation; the id is deterministic."""
        rating = data.Rating("u1", "i9", 881250949.0)
        event = replay.event_of(rating)
        assert parse_watch_event(event.to_json()) == event
        assert event.event_id == "eval:u1:i9:881250949"
        assert replay.event_of(data.Rating("u1", "i9", 881250951.5)).event_id.endswith(
            ":881250951.5"
        )

    def test_chunks_cover_everything_in_order(self) -> None:
        assert replay.chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
