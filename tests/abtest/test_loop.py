"""Closing the loop: the simulated experiment finds a planted lift through the API, and events
sent to the API become training data of the next pipeline run."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from flask.testing import FlaskClient

from recsys.runs.folder import RunFolder
from recsys.pipeline.config import parse_config
from recsys.pipeline.run import run_pipeline
from recsys.pipeline.train import LoadedInput
from serving import create_app
from tests.models.contract import cluster_interactions

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "loop-admin"


def load_simulation() -> Any:
    spec = importlib.util.spec_from_file_location("ab_simulation", ROOT / "examples" / "ab_simulation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class FlaskTransport:
    """The simulation's transport over a Flask test client (same requests, no sockets)."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        response = self.client.open(path, method=method, json=body, headers=headers or {})
        return response.status_code, response.get_json(silent=True)


@pytest.fixture
def client(redis_url: str, key_prefix: str, redis_client: redis.Redis) -> FlaskClient:
    app = create_app({"REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "ADMIN_TOKEN": ADMIN, "ROUTER_REFRESH_SECONDS": 0})
    return app.test_client()


@pytest.mark.slow
@pytest.mark.parametrize(("lift", "found"), [(1.25, True), (1.0, False)])
def test_simulated_experiment_finds_the_planted_lift_and_no_lift_in_aa(
    client: FlaskClient, redis_url: str, key_prefix: str, tmp_path: Path, lift: float, found: bool
) -> None:
    simulation = load_simulation()
    users = simulation.publish_shop(redis_url, key_prefix, 800, seed=3, workdir=str(tmp_path))
    truth = simulation.Truth(base_ctr=0.10, lift=lift)
    result = simulation.run_experiment(
        FlaskTransport(client), users, truth, admin_token=ADMIN, seed=3, requests_per_user=2, n=10,
        control_model="itemknn", treatment_model="popular",
    )
    verdict = result["verdict"]
    assert verdict["ok"], verdict
    assert verdict["significant"] is found and verdict["ci_contains_truth"]
    replay = result["replay"]
    assert replay.unrouted == 0 and replay.requests == 1600
    report_counts = {v["name"]: (v["impressions"], v["clicks"]) for v in result["report"]["variants"]}
    assert report_counts == {k: (c["impressions"], c["clicks"]) for k, c in replay.by_variant.items()}


def test_replay_logic_against_a_fake_api() -> None:
    """The replay itself is unbiased: planted CTRs come back within sampling error."""
    simulation = load_simulation()

    class FakeApi:
        posted = 0

        def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
            if method == "POST":
                assert len(body) <= 500
                self.posted += len(body)
                return 202, {"accepted": len(body)}
            user = int(path.split("/")[3][1:])
            return 200, {"variant": "treatment" if user % 2 else "control", "recommendation_id": "r",
                         "items": [{"item_id": f"i{k}"} for k in range(10)]}

    api = FakeApi()
    result = simulation.replay_users(api, [f"u{k}" for k in range(3000)], simulation.Truth(0.1, 1.5), np.random.default_rng(0))
    assert result.events == api.posted == sum(sum(c.values()) for c in result.by_variant.values())
    for variant, rate in (("control", 0.10), ("treatment", 0.15)):
        counts = result.by_variant[variant]
        se = np.sqrt(rate * (1 - rate) / counts["impressions"])
        assert abs(counts["clicks"] / counts["impressions"] - rate) < 4 * se


def test_events_through_the_api_reach_the_next_pipeline_run(
    client: FlaskClient, redis_url: str, key_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The events reader takes the prefix from the configuration (environment), not from
    # run_pipeline's prefix argument: set both.
    monkeypatch.setenv("RECSYS_KEY_PREFIX", key_prefix)
    now = time.time()
    events = [{"type": "purchase", "user_id": f"shopper{k}", "item_id": "brand-new-item", "value": 2.0, "timestamp": now - k}
              for k in range(12)]
    events += [{"type": "click", "user_id": "shopper0", "item_id": "i3"},
               {"type": "impression", "user_id": "only-saw-things", "item_id": "never-clicked-item"}]
    assert client.post("/v1/events", json=events).status_code == 202

    interactions, catalog = cluster_interactions()
    config = parse_config({
        "data": {"events": {"from_redis": True}},
        "models": {"popular": {"mode": "weight"}},
        "lists": {"together": False, "popular_by_category": False, "user_n": 5, "popular_n": 5},
    })
    result = run_pipeline(config, out=tmp_path, redis_url=redis_url, prefix=key_prefix,
                          data=LoadedInput(interactions, catalog), show_progress=False)
    run = RunFolder(result.run_dir)
    assert run.metadata["counts"]["events"] == len(events)
    assert run.metadata["counts"]["interactions"] == len(interactions) + len(events)
    users, items = run.users(), run.items()
    assert {f"shopper{k}" for k in range(12)} <= set(users.ids) and "only-saw-things" in users
    assert "brand-new-item" in items and "never-clicked-item" in items

    # Weights: 12 purchases x the default purchase weight 5.0; the impression weighs 0.
    popular = run.find_list("popular").read_all().to_pylist()
    overall = next(row for row in popular if row["key"] == "")
    assert overall["item_ids"][0] == "brand-new-item" and overall["scores"][0] == pytest.approx(12 * 5.0)
    assert "never-clicked-item" not in overall["item_ids"]
    # The new lists are live for the API at once.
    answer = client.get("/v1/users/only-saw-things/recommendations").get_json()
    assert answer["items"][0]["item_id"] == "brand-new-item"
