"""``recsys ab report --by-segment``: the report again per customer segment of the live
version (user -> segment from the published mapping), on events in the test Redis."""

from __future__ import annotations

import json
import time

import numpy as np
import orjson
import pytest
import redis
from click.testing import CliRunner

from recsys.abtest.assignment import assign_many
from recsys.abtest.events import validate_events, write_events
from recsys.abtest.experiments import Experiment, ExperimentStore, Variant
from recsys.abtest.report import compute_report, segment_reports
from recsys.cli.main import cli
from recsys.store.keys import KeyLayout
from tests.serving.fixtures import publish_fake


def _segmented_version(client: redis.Redis, layout: KeyLayout, users: list[str]) -> dict[str, str]:
    """The fake version with segments: even users in segment 0, odd ones in 1, the last
    ten in none."""
    fake = publish_fake(client, layout)
    meta = orjson.loads(client.get(layout.meta(fake.version)))
    meta["segments"] = {"0": "recent, frequent", "1": "lapsed, one-off"}
    client.set(layout.meta(fake.version), orjson.dumps(meta))
    mapping = {u: str(k % 2) for k, u in enumerate(users[:-10])}
    client.hset(layout.segment_of(fake.version), mapping=mapping)
    return mapping


def test_segment_reports_split_the_units() -> None:
    import pandas as pd

    experiment = Experiment(
        name="e", variants=[Variant(name="control", model="a"), Variant(name="treatment", model="b")], salt="s", start=0
    )
    users = [f"u{k}" for k in range(400)]
    frame = pd.DataFrame({"event_type": "impression", "user_id": users, "session_id": "", "item_id": "i",
                          "value": np.nan, "timestamp": 10.0, "recommendation_id": ""})
    mapping = {u: "0" if k < 300 else "1" for k, u in enumerate(users[:-20])}
    groups = segment_reports(experiment, frame, mapping, {"0": "big", "1": "small"})
    assert [g["segment"] for g in groups] == ["0", "1", "none"]
    assert [g["users"] for g in groups] == [300, 80, 20]
    whole = compute_report(experiment, frame)
    for i, variant in enumerate(whole["variants"]):
        assert sum(g["report"]["variants"][i]["units"] for g in groups) == variant["units"]
    with pytest.raises(ValueError):
        segment_reports(experiment.model_copy(update={"unit": "session"}), frame, mapping, {})


def test_cli_report_by_segment(redis_url: str, redis_client: redis.Redis, key_prefix: str) -> None:
    layout = KeyLayout(key_prefix)
    users = [f"u{k}" for k in range(1000)]
    mapping = _segmented_version(redis_client, layout, users)
    now = time.time()

    def run(*args: str):  # noqa: ANN202
        return CliRunner().invoke(cli, ["ab", "--redis-url", redis_url, "--prefix", key_prefix, *args])

    assert run("create", "seg", "--variant", "control=als", "--variant", "treatment=itemknn",
               "--salt", "fixed", "--start", str(now - 600)).exit_code == 0
    variants = assign_many(ExperimentStore(redis_client, layout).get("seg"), users)
    rng = np.random.default_rng(0)
    raw = []
    for user, variant in zip(users, variants):
        raw += [{"type": "impression", "user_id": user, "item_id": "i", "timestamp": now - 60}] * 4
        # Treatment lifts clicks in segment 0 only.
        rate = 0.6 if variant == "treatment" and mapping.get(user) == "0" else 0.2
        raw += [{"type": "click", "user_id": user, "item_id": "i", "timestamp": now - 59}] * int(rng.binomial(4, rate))
    for start in range(0, len(raw), 500):
        write_events(redis_client, layout, validate_events(raw[start : start + 500], now=now))

    result = run("report", "seg", "--by-segment", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    groups = {g["segment"]: g for g in document["by_segment"]}
    assert set(groups) == {"0", "1", "none"}
    assert groups["0"]["name"] == "recent, frequent" and groups["none"]["users"] == 10
    lift = {k: g["report"]["variants"][1]["vs_control"]["ctr"] for k, g in groups.items()}
    assert lift["0"]["significant"] and lift["0"]["diff"] > 0.3
    assert abs(lift["1"]["diff"]) < 0.1
    assert sum(g["report"]["variants"][0]["units"] for g in groups.values()) == document["variants"][0]["units"]

    text = run("report", "seg", "--by-segment")
    assert text.exit_code == 0 and "== segment 0: recent, frequent" in text.output and "== segment none" in text.output
    assert "by_segment" not in json.loads(run("report", "seg", "--json").stdout)
