"""The shipped alert rules and Grafana dashboard parse and use only metrics recsys exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from recsys.pipeline import textfile
from serving import metrics as api_metrics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ops"
METRIC = re.compile(r"\brecsys_[a-z_]+")


def exported_metrics() -> set[str]:
    names = set(METRIC.findall(Path(textfile.__file__).read_text()))
    names |= set(METRIC.findall(Path(api_metrics.__file__).read_text()))
    names.add("recsys_live_version_age_seconds")
    # Histograms expose _bucket/_count/_sum series.
    return names | {f"{n}_{suffix}" for n in names for suffix in ("bucket", "count", "sum")}


def test_alert_rules_parse_and_name_real_metrics() -> None:
    document = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert len(rules) >= 6 and all({"alert", "expr"} <= set(rule) for rule in rules)
    used = {name for rule in rules for name in METRIC.findall(rule["expr"])}
    assert used and used <= exported_metrics(), used - exported_metrics()


def test_grafana_dashboard_is_valid_json_with_real_metrics() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used <= exported_metrics(), used - exported_metrics()
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
