"""promtool and amtool accept the shipped rules, their unit tests, the configs and the panels.

promtool comes from Debian's ``prometheus`` package and amtool from
``prometheus-alertmanager``; without them these tests skip and say so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.deploy import DEPLOY, PROMETHEUS

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package: prometheus)"
)
needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool not installed (Debian package: prometheus-alertmanager)"
)
RULE_FILES = [PROMETHEUS / "reco.recording.yml", PROMETHEUS / "reco.rules.yml"]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
class TestPromtool:
    def test_rule_files_are_valid(self) -> None:
        """`promtool check rules` accepts the recording and alerting rules."""
        result = _run(PROMTOOL or "promtool", "check", "rules", *RULE_FILES)
        assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.parametrize(
        "test_file", sorted((PROMETHEUS / "tests").glob("*.yml")), ids=lambda p: p.name
    )
    def test_rule_unit_tests_pass(self, test_file: Path) -> None:
        """`promtool test rules`: each alert fires (and stays quiet) as its test says."""
        result = _run(PROMTOOL or "promtool", "test", "rules", test_file)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_prometheus_config_is_valid(self) -> None:
        """The compose stack's prometheus.yml (with its rule files) passes `promtool check config`."""
        result = _run(PROMTOOL or "promtool", "check", "config", PROMETHEUS / "prometheus.yml")
        assert result.returncode == 0, result.stdout + result.stderr

    def test_dashboard_and_canary_queries_parse(self, tmp_path: Path) -> None:
        """Panel and canary-analysis queries are valid PromQL once their variables are filled."""
        panels = json.loads((DEPLOY / "grafana" / "reco.json").read_text())["panels"]
        exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
        docs = yaml.safe_load_all((DEPLOY / "kubernetes" / "rollout-canary.yaml").read_text())
        (template,) = [d for d in docs if d["kind"] == "AnalysisTemplate"]
        exprs += [m["provider"]["prometheus"]["query"] for m in template["spec"]["metrics"]]
        fill = {"$__rate_interval": "1m", "$job": "reco", "{{args.canary-hash}}": "abc123"}
        for variable, value in fill.items():
            exprs = [expr.replace(variable, value) for expr in exprs]
        rules = [{"record": f"reco:query_check_{i}", "expr": e} for i, e in enumerate(exprs)]
        path = tmp_path / "dashboard.rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        result = _run(PROMTOOL or "promtool", "check", "rules", path)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
class TestAmtool:
    def test_alertmanager_config_is_valid(self) -> None:
        """`amtool check-config` accepts the example Alertmanager configuration."""
        result = _run(
            AMTOOL or "amtool", "check-config", DEPLOY / "alertmanager" / "alertmanager.yml"
        )
        assert result.returncode == 0, result.stdout + result.stderr
