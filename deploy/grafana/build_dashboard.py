"""Generate deploy/grafana/reco.json, the Grafana dashboard for reco.

The dashboard is code so that panels stay uniform and reviewable: edit this file, run
``python deploy/grafana/build_dashboard.py``, commit both. A test checks that reco.json is
what this script writes and that every query names a metric reco declares.

Rows: the golden signals (traffic, errors, latency, saturation), readiness, the consumer,
the outbox relay, impressions (background work), the PostgreSQL pool, and retention
(maintenance passes, table sizes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "reco.json"
SEL = 'job="$job"'
NO_PROBES = 'route!~"/healthz|/readyz|/metrics"'
FIVE_XX = 'status=~"5.."'

Target = tuple[str, str]  # (PromQL, legend)


def _target(index: int, expr: str, legend: str) -> dict[str, Any]:
    return {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend,
        "refId": chr(ord("A") + index),
    }


def panel(title: str, unit: str, targets: list[Target], description: str = "") -> dict[str, Any]:
    """A time-series panel; its position is set by :func:`layout`."""
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [_target(i, expr, legend) for i, (expr, legend) in enumerate(targets)],
    }


def rate(metric: str, extra: str = "", by: str = "") -> str:
    labels = ", ".join(part for part in (SEL, extra) if part)
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{labels}}}[$__rate_interval]))"


def p(quantile: float, metric: str, extra: str = "", by: str = "") -> str:
    labels = ", ".join(part for part in (SEL, extra) if part)
    grouping = ", ".join(part for part in (by, "le") if part)
    return (
        f"histogram_quantile({quantile}, sum by ({grouping}) "
        f"(rate({metric}_bucket{{{labels}}}[$__rate_interval])))"
    )


ERROR_RATIO = (
    f"{rate('reco_http_requests_total', NO_PROBES + ', ' + FIVE_XX)} "
    f"/ {rate('reco_http_requests_total', NO_PROBES)}"
)

GOLDEN = [
    panel("Traffic (requests/s by route)", "reqps",
          [(rate("reco_http_requests_total", NO_PROBES, "route"), "{{route}}")]),
    panel("Errors (5xx ratio)", "percentunit",
          [(ERROR_RATIO, "5xx ratio")],
          "Share of API requests answered 5xx (alert: RecoHighErrorRatio)."),
    panel("Latency (p50 / p99)", "s",
          [(p(0.5, "reco_http_request_duration_seconds", NO_PROBES), "p50"),
           (p(0.99, "reco_http_request_duration_seconds", NO_PROBES), "p99")]),
    panel("Saturation (in-flight requests, per instance)", "short",
          [(f"reco_http_requests_in_flight{{{SEL}}}", "{{instance}}")]),
    panel("Responses by status", "reqps",
          [(rate("reco_http_requests_total", NO_PROBES, "status"), "{{status}}")]),
    panel("Ready instances (/readyz 200)", "short",
          [(f"sum(reco_api_ready{{{SEL}}})", "ready")],
          "Instances that can serve traffic (alerts: RecoNotReady, RecoNoReadyInstance)."),
    panel("Readiness checks (1 ok, 0 failing or degraded)", "short",
          [(f"reco_api_check_status{{{SEL}}}", "{{instance}} {{check}}")],
          "Only database gates /readyz; others degrade (alerts: RecoDegraded, "
          "RecoComponentDownEverywhere)."),
]  # fmt: skip

CONSUMER = [
    panel("Consumer lag (messages)", "short",
          [(f"sum by (topic, partition) (max without (instance, pod) (reco_consumer_lag{{{SEL}}}))",
            "{{topic}}/{{partition}}")]),
    panel("Partitions owned / in the topic", "short",
          [(f"sum(reco_consumer_assigned_partitions{{{SEL}}})", "owned"),
           (f"max(reco_consumer_topic_partitions{{{SEL}}})", "in the topic")],
          "owned below the topic's count: alert RecoConsumerPartitionsUnowned."),
    panel("Watch events by outcome", "ops",
          [(rate("reco_consumer_messages_total", by="outcome"), "{{outcome}}")],
          "invalid, conflict, unprocessable = dead-lettered (alert: RecoDeadLetterRate)."),
    panel("Consumer errors by stage", "ops",
          [(rate("reco_consumer_errors_total", by="stage"), "{{stage}}"),
           (rate("reco_consumer_dead_letter_dropped_total"), "dead-letter dropped")],
          "Transient errors, retried (alert: RecoConsumerErrors); dropped = refused by the "
          "dead-letter topic (alert: RecoDeadLetterDropped)."),
    panel("Batch store time (p99)", "s",
          [(p(0.99, "reco_consumer_batch_duration_seconds"), "p99")]),
    panel("Seconds since the last stored batch", "s",
          [(f"time() - max(reco_consumer_last_processed_timestamp_seconds{{{SEL}}})", "age")]),
    panel("Co-occurrence increments folded", "ops",
          [(rate("reco_cooccurrence_folded_rows_total"), "rows/s"),
           (rate("reco_cooccurrence_folds_total"), "folds/s")],
          "One instance folds at a time (advisory lock); the sum is what counts."),
    panel("Fold time (p99) and fold errors", "s",
          [(p(0.99, "reco_cooccurrence_fold_duration_seconds"), "p99"),
           (rate("reco_cooccurrence_fold_errors_total"), "errors/s")],
          "alert: RecoCooccurrenceFoldErrors"),
    panel("Co-occurrence pairs pruned", "ops",
          [(rate("reco_cooccurrence_pruned_pairs_total"), "pairs/s")],
          "Pairs whose time-decayed weight fell below RECO_COOCCURRENCE_WEIGHT_FLOOR, deleted "
          "every RECO_COOCCURRENCE_PRUNE_INTERVAL: what bounds item_cooccurrence."),
]  # fmt: skip

OUTBOX = [
    panel("Outbox backlog (rows)", "short", [(f"max(reco_outbox_backlog{{{SEL}}})", "backlog")]),
    panel("Oldest unpublished row", "s",
          [(f"max(reco_outbox_oldest_age_seconds{{{SEL}}})", "oldest")]),
    panel("Relay leaders (must be 1)", "short",
          [(f"sum(reco_outbox_leader{{{SEL}}})", "leaders"),
           (f"reco_outbox_leader{{{SEL}}} == 1", "{{instance}}")]),
    panel("Published rows/s by topic", "ops",
          [(rate("reco_outbox_published_total", by="topic"), "{{topic}}")]),
    panel("Relay errors by stage", "ops",
          [(rate("reco_outbox_errors_total", by="stage"), "{{stage}}"),
           (rate("reco_outbox_rejected_total", by="topic"), "rejected {{topic}}")],
          "rejected = refused by the broker for good, set aside (alert: RecoOutboxRowsRejected)."),
    panel("Commit-to-ack latency (p50 / p99)", "s",
          [(p(0.5, "reco_outbox_publish_latency_seconds"), "p50"),
           (p(0.99, "reco_outbox_publish_latency_seconds"), "p99")]),
]  # fmt: skip

IMPRESSIONS = [
    panel("Impression buffer (depth / capacity)", "short",
          [(f"reco_background_queue_depth{{{SEL}}}", "depth {{instance}}"),
           (f"reco_background_queue_capacity{{{SEL}}}", "capacity {{instance}}")]),
    panel("Impressions written / dropped", "ops",
          [(rate("reco_background_written_total"), "written"),
           (rate("reco_background_dropped_total"), "dropped")]),
    panel("Writer errors", "ops", [(rate("reco_background_errors_total"), "errors")]),
    panel("Impression batch write time (p99)", "s",
          [(p(0.99, "reco_background_batch_duration_seconds"), "p99")]),
]  # fmt: skip

DATABASE = [
    panel("Pool connections (open / in use)", "short",
          [(f"sum(reco_db_pool_size{{{SEL}}})", "open"),
           (f"sum(reco_db_pool_in_use{{{SEL}}})", "in use")]),
    panel("Acquire wait (p99)", "s", [(p(0.99, "reco_db_acquire_wait_seconds"), "p99")]),
    panel("Acquire timeouts", "ops", [(rate("reco_db_acquire_timeouts_total"), "timeouts")]),
    panel("Database errors by class", "ops",
          [(rate("reco_db_query_errors_total", by="class"), "{{class}}")]),
]  # fmt: skip

MAINTENANCE = [
    panel("Table size (with indexes)", "bytes",
          [(f"max by (table) (reco_table_bytes{{{SEL}}})", "{{table}}")],
          "Every table of the schema, partitions summed (every instance samples the same)."),
    panel("Index size", "bytes",
          [(f"max by (table) (reco_table_index_bytes{{{SEL}}})", "{{table}}")]),
    panel("Maintenance passes", "ops",
          [(rate("reco_maintenance_runs_total", by="outcome"), "{{outcome}}")]),
    panel("Since the last maintenance success", "s",
          [(f"time() - max(reco_maintenance_last_success_timestamp_seconds{{{SEL}}})", "age")]),
    panel("Partitions created / dropped", "ops",
          [(rate("reco_maintenance_partitions_created_total", by="table"), "created {{table}}"),
           (rate("reco_maintenance_partitions_dropped_total", by="table"), "dropped {{table}}"),
           (rate("reco_maintenance_default_rows_deleted_total", by="table"),
            "expired DEFAULT rows deleted {{table}}")]),
    panel("Outbox rows pruned", "ops", [(rate("reco_outbox_pruned_total"), "pruned")],
          "Published rows past RECO_OUTBOX_RETENTION, deleted by the relay's leader."),
]  # fmt: skip

MEMORY = [
    panel("Model cache (bytes / bound, per instance)", "bytes",
          [(f"reco_model_cache_bytes{{{SEL}}}", "held {{instance}}"),
           (f"reco_model_cache_max_bytes{{{SEL}}}", "bound {{instance}}"),
           (f"reco_list_cache_bytes{{{SEL}}}", "scored lists {{instance}}")],
          "Held above the bound: alert RecoModelCacheOverBound."),
    panel("Model cache evictions", "ops",
          [(rate("reco_model_cache_evictions_total"), "lists/s")],
          "Steady evictions: the bound holds fewer lists than requests use; raise "
          "RECO_RECS_MODEL_CACHE_BYTES if the pod's memory allows."),
]  # fmt: skip

ROWS = [
    ("Golden signals", GOLDEN),
    ("Consumer (watch events)", CONSUMER),
    ("Outbox relay", OUTBOX),
    ("Impressions (background work)", IMPRESSIONS),
    ("PostgreSQL pool", DATABASE),
    ("Retention and table sizes", MAINTENANCE),
    ("Memory (per-process caches)", MEMORY),
]


def layout(rows: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Rows of panels, three per line, 8 units high, with ids in order."""
    panels: list[dict[str, Any]] = []
    y = 0
    for title, row in rows:
        panels.append({"type": "row", "title": title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})  # fmt: skip
        y += 1
        for index, item in enumerate(row):
            item = {**item, "gridPos": {"h": 8, "w": 8, "x": 8 * (index % 3), "y": y}}
            panels.append(item)
            if index % 3 == 2 or index == len(row) - 1:
                y += 8
    for number, item in enumerate(panels, start=1):
        item["id"] = number
    return panels


def _variable(name: str, query: dict[str, Any] | str, kind: str) -> dict[str, Any]:
    return {"name": name, "type": kind, "query": query, "refresh": 1, "hide": 0}


def dashboard() -> dict[str, Any]:
    job = _variable("job", "label_values(reco_build_info, job)", "query")
    job["datasource"] = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "uid": "reco-overview",
        "title": "reco",
        "description": "reco: golden signals, consumer, outbox, impressions, PostgreSQL pool.",
        "tags": ["reco"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [_variable("datasource", "prometheus", "datasource"), job]},
        "annotations": {"list": []},
        "panels": layout(ROWS),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
