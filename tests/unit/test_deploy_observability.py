"""Alert rules, recording rules, the canary analysis and the dashboard agree with the code."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from reco.observability.metrics import REGISTRY
from tests.support.deploy import (
    DEPLOY,
    KUBERNETES,
    PROMETHEUS,
    ROOT,
    by_kind,
    load_all_yaml,
    load_script,
    load_yaml,
    metric_names,
)

DECLARED = {collector.name for collector in REGISTRY.collectors.values()}
DASHBOARD = DEPLOY / "grafana" / "reco.json"


def _rules(name: str) -> list[dict[str, Any]]:
    data = load_yaml(PROMETHEUS / name)
    return [rule for group in data["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules("reco.rules.yml") if "alert" in rule]


def _dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def _analysis_queries() -> list[str]:
    (template,) = by_kind(load_all_yaml(KUBERNETES / "rollout-canary.yaml"), "AnalysisTemplate")
    return [m["provider"]["prometheus"]["query"] for m in template["spec"]["metrics"]]


class TestMetricNames:
    @pytest.mark.parametrize(
        "source", ["reco.rules.yml", "reco.recording.yml", "dashboard", "canary analysis"]
    )
    def test_every_queried_metric_is_declared(self, source: str) -> None:
        """No rule, panel or analysis reads a metric that reco/observability/metrics.py lacks."""
        if source == "dashboard":
            exprs = _dashboard_exprs()
        elif source == "canary analysis":
            exprs = _analysis_queries()
        else:
            exprs = [rule["expr"] for rule in _rules(source)]
        used = set().union(*(metric_names(expr) for expr in exprs))
        assert used, "no reco metric found: is the parsing broken?"
        assert used <= DECLARED, sorted(used - DECLARED)

    def test_the_rules_cover_every_metric_family_that_can_go_wrong(self) -> None:
        """Alerts watch readiness, HTTP, consumer, outbox, impressions and the pool."""
        exprs = " ".join(
            rule["expr"] for rule in _rules("reco.rules.yml") + _rules("reco.recording.yml")
        )
        for metric in (
            "reco_api_check_status", "reco_http_requests_total",
            "reco_http_request_duration_seconds", "reco_consumer_lag",
            "reco_consumer_messages_total", "reco_outbox_backlog",
            "reco_outbox_oldest_age_seconds", "reco_outbox_leader",
            "reco_background_dropped_total", "reco_db_acquire_timeouts_total",
        ):  # fmt: skip
            assert metric in exprs, metric

    def test_dashboard_covers_every_declared_metric(self) -> None:
        """Each metric reco exports (but the build label) has a panel."""
        used = set().union(*(metric_names(expr) for expr in _dashboard_exprs()))
        assert DECLARED - used <= {"reco_build_info", "reco_recommendations_served_total"}


class TestAlerts:
    def test_every_alert_has_severity_summary_and_playbook(self) -> None:
        """Each alert routes by severity and links a playbook heading that exists."""
        runbook = (ROOT / "docs" / "runbook.md").read_text()
        anchors = {
            re.sub(r"[^a-z0-9-]", "", heading.strip().lower().replace(" ", "-"))
            for heading in re.findall(r"^#+ (.+)$", runbook, flags=re.MULTILINE)
        }
        for alert in _alerts():
            assert alert["labels"]["severity"] in {"page", "ticket"}, alert["alert"]
            assert alert["annotations"]["summary"], alert["alert"]
            target = alert["annotations"]["runbook"]
            assert target.startswith("docs/runbook.md#"), alert["alert"]
            assert target.split("#", 1)[1] in anchors, f"{alert['alert']}: no heading {target}"

    def test_every_alert_is_unit_tested(self) -> None:
        """deploy/prometheus/tests names each alert at least once."""
        tested = " ".join(p.read_text() for p in (PROMETHEUS / "tests").glob("*.yml"))
        untested = {a["alert"] for a in _alerts()} - set(re.findall(r"alertname: (\w+)", tested))
        assert untested <= {"RecoElevatedErrorRatio"}, sorted(untested)

    def test_alertmanager_routes_both_severities(self) -> None:
        """The example Alertmanager config has a route for page and for ticket."""
        config = load_yaml(DEPLOY / "alertmanager" / "alertmanager.yml")
        matchers = [m for route in config["route"]["routes"] for m in route["matchers"]]
        assert {'severity="page"', 'severity="ticket"'} <= set(matchers)


class TestDashboard:
    def test_committed_dashboard_is_the_generated_one(self) -> None:
        """reco.json is exactly what build_dashboard.py writes (regenerate after edits)."""
        script = load_script(DEPLOY / "grafana" / "build_dashboard.py")
        assert DASHBOARD.read_text() == script.render()

    def test_panel_ids_are_unique_and_positions_do_not_overlap(self) -> None:
        """Grafana needs unique ids; overlapping grid cells would stack panels."""
        panels = json.loads(DASHBOARD.read_text())["panels"]
        assert len({p["id"] for p in panels}) == len(panels)
        cells = set()
        for panel in panels:
            pos = panel["gridPos"]
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, panel["title"]
                    cells.add((x, y))
