"""Every Prometheus metric of reco, declared in one place.

Names follow ``reco_<noun>_<unit>``, counters end in ``_total``, units are
base units (seconds). Labels are bounded: route templates and the methods the
app routes (else ``other``), never raw paths, request methods or user ids.
Gauges that mirror a buffer read its ``statistics()`` snapshot.

The per-request metrics go through :class:`Tally` and :class:`Observations`:
an aioprometheus update serialises its label dict to a key (orjson) and
checks every label name, about 10 us per update, several per request. A
tally counts in a plain dict keyed by the label values and adds to the
aioprometheus counter when ``/metrics`` renders; an observation goes
straight to the aioprometheus bucket object of its label set, looked up once.
What ``/metrics`` shows is the same.
"""

from __future__ import annotations

from typing import Any

from aioprometheus.collectors import Counter, Gauge, Histogram, Registry
from aioprometheus.renderer import render

from reco import __version__

REGISTRY = Registry()

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _counter(name: str, doc: str) -> Counter:
    return Counter(name, doc, registry=REGISTRY)


def _gauge(name: str, doc: str) -> Gauge:
    return Gauge(name, doc, registry=REGISTRY)


def _histogram(name: str, doc: str, buckets: tuple[float, ...] = _LATENCY) -> Histogram:
    return Histogram(name, doc, registry=REGISTRY, buckets=buckets)


class Tally:
    """Increments of ``counter`` kept in a dict, added to it when ``/metrics`` renders."""

    def __init__(self, counter: Counter, *label_names: str) -> None:
        self.counter = counter
        self.label_names = label_names
        self._pending: dict[tuple[str, ...], int] = {}
        _TALLIES.append(self)

    def inc(self, *label_values: str) -> None:
        pending = self._pending
        pending[label_values] = pending.get(label_values, 0) + 1

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for values, n in pending.items():
            self.counter.add(dict(zip(self.label_names, values, strict=True)), n)


class Observations:
    """``histogram.observe`` without the per-call label serialisation."""

    def __init__(self, histogram: Histogram, *label_names: str) -> None:
        self.histogram = histogram
        self.label_names = label_names
        self._buckets: dict[tuple[str, ...], Any] = {}  # values -> aioprometheus's aggregator

    def observe(self, value: float, *label_values: str) -> None:
        buckets = self._buckets.get(label_values)
        if buckets is None:
            labels = dict(zip(self.label_names, label_values, strict=True))
            self.histogram.observe(labels, value)
            self._buckets[label_values] = self.histogram.get_value(labels)
            return
        buckets.observe(float(value))


class Level:
    """A gauge kept as an int, set on ``gauge`` when ``/metrics`` renders."""

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self.value = 0
        gauge.set({}, 0)
        _TALLIES.append(self)

    def flush(self) -> None:
        self.gauge.set({}, self.value)


_TALLIES: list[Tally | Level] = []

# --- process and HTTP -------------------------------------------------------
build_info = _gauge("reco_build_info", "Always 1; the version label says which build runs.")
build_info.set({"version": __version__}, 1)
http_requests = _counter("reco_http_requests_total", "HTTP requests answered.")
http_duration = _histogram("reco_http_request_duration_seconds", "HTTP request duration.")
http_in_flight = _gauge("reco_http_requests_in_flight", "HTTP requests being handled now.")
# The request path's fast forms of the three above (see the module docstring).
http_requests_tally = Tally(http_requests, "method", "route", "status")
http_duration_observations = Observations(http_duration, "method", "route")
http_in_flight_level = Level(http_in_flight)
check_status = _gauge(
    "reco_api_check_status",
    "Readiness checks: 1 healthy, 0 failing (critical) or degraded, one series per check.",
)
api_ready = _gauge(
    "reco_api_ready", "1 when /readyz answers 200 (critical checks ok, not shutting down), else 0."
)

# --- PostgreSQL ---------------------------------------------------------------
db_pool_size = _gauge("reco_db_pool_size", "Connections open in the pool.")
db_pool_in_use = _gauge("reco_db_pool_in_use", "Pool connections checked out.")
db_acquire_wait = _histogram("reco_db_acquire_wait_seconds", "Time waiting for a pool connection.")
db_acquire_timeouts = _counter(
    "reco_db_acquire_timeouts_total", "Pool acquires that timed out instead of hanging."
)
db_query_errors = _counter("reco_db_query_errors_total", "Database errors by class.")

# --- consumer -----------------------------------------------------------------
consumer_messages = _counter(
    "reco_consumer_messages_total",
    "Watch-event messages by outcome (processed|duplicate|invalid|conflict|unprocessable).",
)
consumer_lag = _gauge("reco_consumer_lag", "High-water mark minus position, per partition.")
consumer_assigned_partitions = _gauge(
    "reco_consumer_assigned_partitions", "Watch-event partitions this instance's consumer owns."
)
consumer_topic_partitions = _gauge(
    "reco_consumer_topic_partitions", "Partitions of the watch-event topic (broker metadata)."
)
consumer_batch_duration = _histogram(
    "reco_consumer_batch_duration_seconds", "Time to store one consumer batch.", _BATCH
)
consumer_errors = _counter(
    "reco_consumer_errors_total",
    "Transient consumer errors, retried, by stage (connect|poll|process|dead_letter|commit).",
)
consumer_dead_letter_dropped = _counter(
    "reco_consumer_dead_letter_dropped_total",
    "Rejected records the dead-letter topic refused even without their value (logged).",
)
consumer_last_processed = _gauge(
    "reco_consumer_last_processed_timestamp_seconds", "Unix time of the last stored batch."
)
cooccurrence_folds = _counter(
    "reco_cooccurrence_folds_total", "Folds this instance made, by part of the pair space."
)
cooccurrence_folded = _counter(
    "reco_cooccurrence_folded_rows_total", "Co-occurrence increments folded by this instance."
)
cooccurrence_fold_duration = _histogram(
    "reco_cooccurrence_fold_duration_seconds", "Time to fold the pending increments.", _BATCH
)
cooccurrence_fold_errors = _counter(
    "reco_cooccurrence_fold_errors_total", "Folds that failed (retried with backoff)."
)
cooccurrence_pruned = _counter(
    "reco_cooccurrence_pruned_pairs_total",
    "Co-occurrence pairs this instance deleted, their decayed weight below the floor.",
)

# --- impressions (background work) ---------------------------------------------
background_queue_depth = _gauge("reco_background_queue_depth", "Impressions waiting to be written.")
background_queue_capacity = _gauge(
    "reco_background_queue_capacity", "Capacity of the impression buffer."
)
background_dropped = _counter(
    "reco_background_dropped_total", "Impressions dropped (full buffer, or lost at shutdown)."
)
background_written = _counter("reco_background_written_total", "Impressions written.")
background_batch_duration = _histogram(
    "reco_background_batch_duration_seconds", "Time to write one impression batch.", _BATCH
)
background_errors = _counter("reco_background_errors_total", "Impression writer errors.")

# --- outbox relay ---------------------------------------------------------------
outbox_published = _counter("reco_outbox_published_total", "Outbox rows published, by topic.")
outbox_errors = _counter("reco_outbox_errors_total", "Relay errors by stage (claim|publish|mark).")
outbox_backlog = _gauge("reco_outbox_backlog", "Unpublished outbox rows.")
outbox_oldest_age = _gauge(
    "reco_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row."
)
outbox_rejected = _counter(
    "reco_outbox_rejected_total",
    "Outbox rows the broker refused for good (too large): set aside, never retried.",
)
outbox_publish_latency = _histogram(
    "reco_outbox_publish_latency_seconds", "From outbox commit to broker ack.", _LATENCY
)
outbox_leader = _gauge("reco_outbox_leader", "1 when this instance's relay leads, else 0.")

# --- maintenance (reco/maintenance/) ---------------------------------------------
maintenance_runs = _counter(
    "reco_maintenance_runs_total",
    "Maintenance passes by outcome (ok|skipped: another instance held the lock|transient|error).",
)
maintenance_last_success = _gauge(
    "reco_maintenance_last_success_timestamp_seconds",
    "Unix time of this instance's last maintenance pass that ran to the end (0: none yet).",
)
maintenance_partitions_created = _counter(
    "reco_maintenance_partitions_created_total", "Daily partitions created ahead, by table."
)
maintenance_partitions_dropped = _counter(
    "reco_maintenance_partitions_dropped_total", "Partitions dropped past retention, by table."
)
maintenance_default_rows_deleted = _counter(
    "reco_maintenance_default_rows_deleted_total",
    "Rows of expired days deleted from a DEFAULT partition (none made to drop), by table.",
)
outbox_pruned = _counter(
    "reco_outbox_pruned_total", "Published outbox rows deleted past RECO_OUTBOX_RETENTION."
)
table_bytes = _gauge(
    "reco_table_bytes", "Total size of a table with its indexes and TOAST (partitions summed)."
)
table_index_bytes = _gauge(
    "reco_table_index_bytes", "Size of a table's indexes (partitions summed)."
)

# --- recommendations --------------------------------------------------------------
recommendations_served = _counter(
    "reco_recommendations_served_total", "Recommendation lists served, by endpoint and algorithm."
)
recommendations_served_tally = Tally(recommendations_served, "endpoint", "algorithm")
# The per-process caches (reco/engine/cache.py, lists.py): what they hold, in bytes as
# reco/engine/sizes.py counts them, and their bounds.
model_cache_bytes = Level(_gauge("reco_model_cache_bytes", "Bytes the model cache holds."))
model_cache_max_bytes = Level(
    _gauge("reco_model_cache_max_bytes", "The model cache's bound (RECO_RECS_MODEL_CACHE_BYTES).")
)
model_cache_evictions = Tally(
    _counter(
        "reco_model_cache_evictions_total", "Model-cache lists dropped to stay within the bound."
    )
)
list_cache_bytes = Level(_gauge("reco_list_cache_bytes", "Bytes the kept scored lists hold."))


def render_metrics(accept: list[str]) -> tuple[bytes, dict[str, str]]:
    """The text exposition of every metric, for ``GET /metrics``."""
    for tally in _TALLIES:
        tally.flush()
    body, headers = render(REGISTRY, accept)
    return body, dict(headers)
