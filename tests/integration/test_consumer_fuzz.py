"""The Kafka fuzzing suite of issue 10: hostile records through the real broker and consumer.

A few hundred records are generated up front by hypothesis (one ``@given``
run collecting its examples: producing and consuming per example would take
minutes) with a fixed seed, plus hand-written edge cases, all produced with
one key (one partition: every record stands between the sentinel and the
consumer). The real consumer component, with the real ``apply_events``,
reads them. Then:

* every record is either stored (its ``event_id`` is in ``watch_events``) or
  dead-lettered with a reason from the bounded set, with its key and value
  unchanged; records whose fate the contract fixes (valid events, each kind
  of invalid one, conflicting duplicates) get exactly that fate;
* a sentinel produced after them is stored within ``SENTINEL_WITHIN``;
* the component never exits;
* ``reco_consumer_messages_total`` adds up to the records produced, and its
  invalid/conflict/unprocessable counts match the dead letters.

``KAFKA_FUZZ_RECORDS`` (default 250) and ``KAFKA_FUZZ_SEED`` (default: the
derandomized fixed seed) give a larger or another run locally.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from reco.settings import Settings
from tests.conftest import Topics
from tests.integration.consumer_harness import fast
from tests.integration.hostile_support import (
    OUTCOMES,
    REASONS,
    Db,
    counted_since,
    dead_letters_by_offset,
    guarded_consumer,
    header,
    message_counts,
    now,
    produce,
    producer,
    read_all,
    watch,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

RECORDS = int(os.environ.get("KAFKA_FUZZ_RECORDS", "250"))
SEED = os.environ.get("KAFKA_FUZZ_SEED")
MAX_BYTES = 16384  # consumer_max_message_bytes of the run (the ids of 128 astral chars fit)
SENTINEL_WITHIN = (
    15.0  # seconds from the sentinel's ack to its row (2-core CI, ~300 records before it)
)
KEY = b"fuzz"
STORED = "stored"
NEAR_FUTURE = dt.timedelta(seconds=60)  # at most this ahead: accepted (RECO_EVENT_MAX_FUTURE 300 s)
FAR_FUTURE = dt.timedelta(hours=1)  # at least this ahead: invalid_event
POOL = [f"fz-pool-{n}" for n in range(4)]  # shared items: popularity rows updated across batches
FIRST = dt.datetime(1, 1, 1)
LAST = dt.datetime(9999, 12, 31, 23, 59, 59, 999999)


@attrs.frozen
class Draft:
    """One record to be: a JSON value (``obj``) or raw bytes (``raw``), and what it must become.

    ``expect`` is the set of allowed outcomes ("stored" or dead-letter reasons);
    None allows any (stored, or dead-lettered with a bounded reason).
    """

    kind: str
    obj: Any = None
    raw: bytes | None = None
    expect: frozenset[str] | None = None
    ascii_only: bool = True
    prefix_id: bool = False  # a generated event: its id gets a unique prefix (no chance resends)


@attrs.frozen
class Case:
    kind: str
    value: bytes | None
    expect: frozenset[str] | None
    event_id: str | None  # the id the oracle looks for in watch_events
    shares_id: bool = False  # a designed resend of an id stored earlier


def _expect(*outcomes: str) -> frozenset[str]:
    return frozenset(outcomes)


# ---------------------------------------------------------------- strategies
CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")  # every plane
IDS = st.text(CHARS, min_size=1, max_size=40)
SHALLOW = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(CHARS, max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(CHARS, max_size=6), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
GOOD_SECONDS = (
    st.none() | st.just(0) | st.just(-0.0) | st.just(5e-324) | st.integers(0, 999_999_999)
    | st.floats(0, 999_999_999, allow_nan=False)
)  # fmt: skip
BAD_SECONDS = (
    st.floats(max_value=-1e-300, allow_infinity=False) | st.floats(min_value=1.0001e9, allow_infinity=False)
    | st.integers(10**9 + 1, 10**400) | st.integers(max_value=-1)
    | st.sampled_from(["NaN", "Infinity", "12", "", True, False, [1], {"s": 1}])
)  # fmt: skip


@st.composite
def rfc3339(draw: st.DrawFn, lo: dt.datetime, hi: dt.datetime) -> str:
    """An RFC 3339 timestamp of an instant in [lo, hi] (naive UTC), in a random UTC offset."""
    instant = draw(st.datetimes(min_value=lo, max_value=hi)).replace(tzinfo=dt.UTC)
    zone = dt.timezone(dt.timedelta(minutes=draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))))
    try:
        local = instant.astimezone(zone)
    except OverflowError:  # the local time would leave years 1-9999: say it in UTC
        local = instant
    text = local.isoformat()
    if text.endswith("+00:00") and draw(st.booleans()):
        text = text[:-6] + "Z"
    if draw(st.integers(0, 9)) == 0:
        text = text.lower()  # RFC 3339 5.6: "T" and "Z" may be lower case
    return text


def _naive(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(tzinfo=None)


def valid_events(t: dt.datetime) -> st.SearchStrategy[dict[str, Any]]:
    """Events the contract accepts: any past instant in years 1-9999, or at most 60 s ahead."""
    when = rfc3339(FIRST, _naive(t)) | rfc3339(_naive(t), _naive(t + NEAR_FUTURE))
    return st.fixed_dictionaries(
        {"event_id": IDS, "user_id": IDS | st.sampled_from(["fz-u0", "fz-u1"]),
         "item_id": IDS | st.sampled_from(POOL), "occurred_at": when},
        optional={"watched_seconds": GOOD_SECONDS, "completed": st.none() | st.booleans(),
                  "extra": SHALLOW, "source": st.text(CHARS, max_size=20)},
    )  # fmt: skip


@st.composite
def valid_drafts(draw: st.DrawFn, t: dt.datetime) -> Draft:
    return Draft("valid", draw(valid_events(t)), expect=_expect(STORED),
                 ascii_only=draw(st.booleans()), prefix_id=True)  # fmt: skip


@st.composite
def invalid_drafts(draw: st.DrawFn, t: dt.datetime) -> Draft:
    """A valid event with one thing broken: each of these is an invalid_event."""
    obj = dict(draw(valid_events(t)))
    field = draw(st.sampled_from(["event_id", "user_id", "item_id"]))
    breaks: dict[str, Callable[[], None]] = {
        "missing": lambda: obj.pop(draw(st.sampled_from(["event_id", "user_id", "item_id", "occurred_at"]))),
        "id_empty": lambda: obj.update({field: ""}),
        "id_129": lambda: obj.update({field: "x" * 129}),
        "id_nul": lambda: obj.update({field: obj[field] + "\x00"}),
        "id_surrogate": lambda: obj.update({field: obj[field][:5] + draw(st.sampled_from(["\ud800", "\udfff", "\udbff"]))}),
        "id_type": lambda: obj.update({field: draw(st.none() | st.integers() | st.booleans() | st.lists(st.integers(), max_size=2))}),
        "time_type": lambda: obj.update({"occurred_at": draw(st.none() | st.integers() | st.floats(allow_nan=False))}),
        "time_garbage": lambda: obj.update({"occurred_at": draw(st.sampled_from(["", "yesterday", "2026-13-01T00:00:00Z", "2026-01-01", "10000-01-01T00:00:00Z"]))}),
        "time_naive": lambda: obj.update({"occurred_at": draw(st.datetimes(FIRST, _naive(t))).isoformat()}),
        "time_future": lambda: obj.update({"occurred_at": draw(rfc3339(_naive(t + FAR_FUTURE), LAST))}),
        "seconds": lambda: obj.update({"watched_seconds": draw(BAD_SECONDS)}),
        "completed": lambda: obj.update({"completed": draw(st.sampled_from(["yes", 1, 0, [], {}]))}),
    }  # fmt: skip
    kind = draw(st.sampled_from(sorted(breaks)))
    breaks[kind]()
    broke_id = kind == "missing" or (kind.startswith("id_") and field == "event_id")
    return Draft(f"invalid:{kind}", obj, expect=_expect("invalid_event"), prefix_id=not broke_id)


@st.composite
def raw_drafts(draw: st.DrawFn, t: dt.datetime) -> Draft:
    """Bytes that never were an event, and JSON of random shape."""
    choice = draw(st.sampled_from(["bytes", "shape", "bad_utf8"]))
    if choice == "bytes":
        return Draft("random bytes", raw=draw(st.binary(max_size=300)))
    if choice == "shape":
        shape = draw(
            SHALLOW
            | st.lists(SHALLOW, max_size=4)
            | st.dictionaries(st.text(CHARS, max_size=8), SHALLOW, max_size=6)
        )
        return Draft("random JSON", shape, expect=_expect("invalid_event"))  # fmt: skip
    good = json.dumps(draw(valid_events(t))).encode()
    cut = draw(st.integers(0, len(good)))
    junk = draw(
        st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"])
    )
    return Draft("invalid UTF-8", raw=good[:cut] + junk + good[cut:], expect=_expect("not_utf8"))


def drafts(t: dt.datetime) -> st.SearchStrategy[Draft]:
    return valid_drafts(t) | valid_drafts(t) | invalid_drafts(t) | invalid_drafts(t) | raw_drafts(t)


def generated(t: dt.datetime, count: int) -> list[Draft]:
    """``count`` hypothesis examples (a fixed seed unless KAFKA_FUZZ_SEED says otherwise)."""
    out: list[Draft] = []

    @settings(max_examples=count, derandomize=SEED is None, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(drafts(t))
    def collect(draft: Draft) -> None:
        out.append(draft)

    (seed(int(SEED))(collect) if SEED is not None else collect)()
    return out


# ---------------------------------------------------------------- hand cases
def _event(kind: str, at: str, *, item: str = "fz-pool-0", **more: Any) -> Draft:
    obj = {**watch(kind, "fz-hand", item, at), **more}
    return Draft(kind, obj, expect=_expect(STORED))


def _raw(kind: str, text: str | bytes, *outcomes: str) -> Draft:
    raw = text.encode() if isinstance(text, str) else text
    return Draft(kind, raw=raw, expect=_expect(*outcomes) if outcomes else None)


def _valid_text(event_id: str, field: str, literal: str) -> str:
    obj = watch(event_id, "fz-hand", "fz-pool-1", "2020-02-29T12:00:00+14:00")
    return json.dumps(obj)[:-1] + f', "{field}": {literal}}}'


def _sized(event_id: str, size: int) -> bytes:
    """A valid event padded to exactly ``size`` bytes."""
    base = watch(event_id, "fz-hand", "fz-pool-2", "2001-09-09T01:46:40Z")
    empty = len(json.dumps({**base, "pad": ""}))
    return json.dumps({**base, "pad": "p" * (size - empty)}).encode()


def early_cases(t: dt.datetime) -> list[Draft]:
    """Before the generated records: first versions of the resends, the oldest dates."""
    planes = "".join(chr(plane * 0x10000 + 0x100) for plane in range(17))  # one char per plane
    return [
        _event("h-year1", "0001-01-01T00:00:00Z"),  # the oldest instant, on a shared item
        _event("h-year1-offset", "0001-01-01T23:59:59.999999+23:59", item="fz-pool-1"),
        _event("h-1970", "1970-01-01T00:00:00Z", item="fz-pool-3"),
        _event("h-dup-same", "2026-01-01T00:00:00Z"),
        _event("h-dup-seconds", "2026-01-01T00:00:01Z", watched_seconds=10),
        _event("h-dup-item", "2026-01-01T00:00:02Z"),
        _event("h-dup-user", "2026-01-01T00:00:03Z"),
        _event("h-dup-time", "2026-01-01T00:00:04Z"),
        _event("h-dup-offset", "2026-01-01T00:00:05Z"),
        Draft(
            "planes",
            watch("h-planes-" + planes, planes, planes, "2024-02-29T23:59:59Z"),
            expect=_expect(STORED),
            ascii_only=False,
        ),
        Draft(
            "id-128",
            watch("h128-" + "\U0001f600" * 123, "u" * 128, "i" * 128, t.isoformat()),
            expect=_expect(STORED),
        ),
    ]


def late_cases(t: dt.datetime) -> list[Draft]:
    """After the generated records (more than a batch later): resends, extremes, raw JSON text."""
    resend = early_cases(t)
    same = resend[3]
    return [
        attrs.evolve(same, kind="resend: same bytes"),
        _event("h-dup-seconds", "2026-01-01T00:00:01Z", watched_seconds=99.5),
        attrs.evolve(
            _event("h-dup-item", "2026-01-01T00:00:02Z", item="fz-other"),
            expect=_expect("conflicting_duplicate"),
        ),
        Draft(
            "h-dup-user",
            watch("h-dup-user", "fz-someone-else", "fz-pool-0", "2026-01-01T00:00:03Z"),
            expect=_expect("conflicting_duplicate"),
        ),
        attrs.evolve(
            _event("h-dup-time", "2026-01-01T00:00:09Z"), expect=_expect("conflicting_duplicate")
        ),
        _event("h-dup-offset", "2026-01-01T01:00:05+01:00"),  # the same instant, another offset
        _event("h-live", t.isoformat()),  # now, on the item dated year 1 above (finding 1)
        _event("h-soon", (t + dt.timedelta(seconds=30)).isoformat(), item="fz-pool-1"),
        attrs.evolve(
            _event("h-year9999", "9999-12-31T23:59:59.999999Z"), expect=_expect("invalid_event")
        ),
        attrs.evolve(
            _event("h-year1-utc0", "0001-01-01T00:30:00+01:00"), expect=_expect("invalid_event")
        ),
        Draft("h-129", watch("h" * 129, "u", "i", t.isoformat()), expect=_expect("invalid_event")),
        _raw("400 digits", _valid_text("h-400", "watched_seconds", "9" * 400), "invalid_event"),
        _raw(
            "-400 digits",
            _valid_text("h-m400", "watched_seconds", "-" + "9" * 400),
            "invalid_event",
        ),
        _raw(
            "5000 digits",
            _valid_text("h-5000", "watched_seconds", "9" * 5000),
            "not_json",
            "invalid_event",
        ),
        _raw(
            "1e400", _valid_text("h-1e400", "watched_seconds", "1e400"), "invalid_event", "not_json"
        ),
        _raw(
            "-1e400",
            _valid_text("h-m1e400", "watched_seconds", "-1e400"),
            "invalid_event",
            "not_json",
        ),
        _raw("1e-400", _valid_text("h-1e-400", "watched_seconds", "1e-400"), STORED),
        _raw("NaN", _valid_text("h-nan", "watched_seconds", "NaN"), "not_json"),
        _raw("Infinity", _valid_text("h-inf", "watched_seconds", "Infinity"), "not_json"),
        _raw("-Infinity", _valid_text("h-minf", "watched_seconds", "-Infinity"), "not_json"),
        _raw(
            "NUL escape", json.dumps(watch("h-nul\x00", "u", "i", t.isoformat())), "invalid_event"
        ),
        _raw(
            "surrogate escape",
            json.dumps(watch("h-sur\ud800", "u", "i", t.isoformat())),
            "invalid_event",
        ),
        _raw(
            "surrogate pair escape",
            json.dumps(watch("h-pair\U0001f600", "u", "i", t.isoformat())),
            STORED,
        ),
        _raw(
            "duplicate keys",
            _valid_text("h-dupkeys", "user_id", '"again"').replace(
                '"item_id"', '"watched_seconds": -1, "watched_seconds": 2, "item_id"'
            ),
        ),
        _raw("deep nesting 50", _valid_text("h-deep50", "extra", "[" * 50 + "]" * 50), STORED),
        _raw("deep nesting 5000", _valid_text("h-deep5000", "extra", "[" * 5000 + "]" * 5000)),
        _raw("deep object", _valid_text("h-deepobj", "extra", '{"a":' * 2000 + "1" + "}" * 2000)),
        _raw("BOM", b"\xef\xbb\xbf" + json.dumps(watch("h-bom", "u", "i", t.isoformat())).encode()),
        _raw(
            "trailing garbage",
            json.dumps(watch("h-trail", "u", "i", t.isoformat())) + " x",
            "not_json",
        ),
        _raw("empty", b"", "not_json", "no_value"),
        _raw("whitespace", b" \n\t", "not_json"),
        _raw("CESU-8 surrogate", b'{"event_id": "\xed\xa0\x80"}', "not_utf8"),
        _raw("exactly the limit", _sized("h-limit", MAX_BYTES), STORED),
        _raw("one byte over", _sized("h-over", MAX_BYTES + 1), "oversized"),
        _raw("far over", _sized("h-far-over", 4 * MAX_BYTES), "oversized"),
        Draft("tombstone", raw=None, expect=_expect("no_value")),
    ]


# ---------------------------------------------------------------- materialise
def materialise(n: int, draft: Draft, *, resend_ids: frozenset[str]) -> Case:
    """Bytes for the record; generated events get a unique id prefix (no accidental resends)."""
    if draft.obj is None:
        value = draft.raw
    else:
        obj = draft.obj
        if draft.prefix_id:  # ids are drawn at most 40 long: prefixed, they stay within 128
            obj = {**obj, "event_id": f"fz{n}.{obj['event_id']}"}
        value = json.dumps(obj, ensure_ascii=draft.ascii_only).encode("utf-8")
    event_id = _event_id(value)
    return Case(draft.kind, value, draft.expect, event_id, shares_id=event_id in resend_ids)


def _event_id(value: bytes | None) -> str | None:
    """The event_id the consumer would store this record under, if it stores it."""
    try:
        obj = json.loads((value or b"").decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return None
    event_id = obj.get("event_id") if isinstance(obj, dict) else None
    return event_id if isinstance(event_id, str) else None


def cases(t: dt.datetime) -> list[Case]:
    early, late = early_cases(t), late_cases(t)
    ids = {_event_id(materialise(0, d, resend_ids=frozenset()).value) for d in late}
    resends = frozenset(i for i in ids if i and i.startswith("h-dup"))
    drafted = [*early, *generated(t, RECORDS), *late]
    return [materialise(n, d, resend_ids=resends) for n, d in enumerate(drafted)]


# ---------------------------------------------------------------- the test
class TestFuzzedRecords:
    async def test_every_record_stored_or_dead_lettered(
        self, kafka_settings: Settings, topics: Topics
    ) -> None:
        """Hostile records: each stored or dead-lettered as the contract says; nothing wedges."""
        t = now()
        batch = cases(t)
        settings = fast(kafka_settings, consumer_batch_max=50, consumer_max_message_bytes=MAX_BYTES)
        db = Db(settings.database_url)
        sentinel = json.dumps(watch("fz-sentinel", "fz-hand", "fz-pool-0", now().isoformat()))
        before = message_counts()
        async with producer(settings.kafka_bootstrap, max_request_size=1 << 20) as client, \
                guarded_consumer(settings) as guard:  # fmt: skip
            placed = await produce(client, topics.watch_events, [c.value for c in batch], key=KEY)
            await produce(client, topics.watch_events, [sentinel.encode()], key=KEY)
            await guard.wait_for(lambda: db.has("fz-sentinel"), within=SENTINEL_WITHIN,
                                 what="the sentinel after the fuzzed records was stored")  # fmt: skip
            total = len(batch) + 1
            await guard.wait_for(lambda: _counted(before, total), within=10,
                                 what=f"reco_consumer_messages_total counted {total} records")  # fmt: skip
            guard.assert_alive()
            dead = dead_letters_by_offset(
                await read_all(settings.kafka_bootstrap, topics.dead_letter), topics.watch_events
            )
        counted = counted_since(before)
        ids = {c.event_id for c in batch if c.event_id is not None}
        stored = await db.stored(ids)
        problems = [p for c, (_, offset) in zip(batch, placed, strict=True)
                    for p in _judge(c, dead.get(offset, []), stored)]  # fmt: skip
        problems += await _first_versions_kept(db)
        problems += _metric_problems(counted, dead, total)
        assert not problems, f"{len(problems)} of {total} records went wrong:\n" + "\n".join(
            problems[:40]
        )


async def _counted(before: dict[str, float], total: int) -> bool:
    return sum(counted_since(before).values()) >= total


def _judge(case: Case, letters: list[Any], stored: set[str]) -> list[str]:
    """What is wrong with one record's fate (empty: nothing)."""
    name = f"{case.kind} {case.value[:80] if case.value else case.value!r}"
    reasons = {header(r, "reason") for r in letters}
    if not letters:
        outcome = STORED
        if case.event_id not in stored:
            return [f"{name}: neither stored nor dead-lettered"]
    elif len(reasons) != 1:
        return [f"{name}: dead-lettered with several reasons {reasons}"]
    else:
        outcome = str(next(iter(reasons)))
        record = letters[0]
        if outcome not in REASONS:
            return [f"{name}: dead-letter reason {outcome!r} is not in the bounded set"]
        if (record.key, record.value) != (KEY, case.value):
            return [f"{name}: the dead letter does not carry the original key and value"]
        if case.event_id in stored and not case.shares_id:
            return [f"{name}: dead-lettered ({outcome}) and stored"]
    if case.expect is not None and outcome not in case.expect:
        return [f"{name}: expected {sorted(case.expect)}, got {outcome}"]
    return []


async def _first_versions_kept(db: Db) -> list[str]:
    """The conflicting resends changed nothing: the rows are the early versions."""
    problems = []
    for event_id, second in (("h-dup-item", 2), ("h-dup-user", 3), ("h-dup-time", 4)):
        row = await db.row(event_id)
        want = ("fz-hand", "fz-pool-0", dt.datetime(2026, 1, 1, 0, 0, second, tzinfo=dt.UTC))
        got = None if row is None else (row["user_id"], row["item_id"], row["occurred_at"])
        if got != want:
            problems.append(f"{event_id}: the first stored version is not kept: {got}")
    return problems


def _metric_problems(
    counted: dict[str, float], dead: dict[int, list[Any]], total: int
) -> list[str]:
    problems = []
    if set(counted) - OUTCOMES:
        problems.append(f"reco_consumer_messages_total outcomes outside the contract: {counted}")
    if sum(counted.values()) != total:
        problems.append(f"reco_consumer_messages_total adds up to {sum(counted.values())}, "
                        f"not the {total} records produced: {counted}")  # fmt: skip
    by_reason: dict[str, int] = {}
    for letters in dead.values():
        reason = str(header(letters[0], "reason"))
        by_reason[reason] = by_reason.get(reason, 0) + 1
    expected = {
        "invalid": sum(n for r, n in by_reason.items()
                       if r not in {"conflicting_duplicate", "unprocessable"}),
        "conflict": by_reason.get("conflicting_duplicate", 0),
        "unprocessable": by_reason.get("unprocessable", 0),
    }  # fmt: skip
    for outcome, n in expected.items():
        if counted.get(outcome, 0) != n:
            problems.append(f"outcome {outcome} counted {counted.get(outcome, 0)}, "
                            f"dead letters say {n}: {by_reason}")  # fmt: skip
    return problems
