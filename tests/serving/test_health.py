"""/healthz, /readyz, /metrics, /openapi.json, and what importing the API pulls in."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.conftest import REPO_ROOT
from tests.serving.fixtures import FakeVersion


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_healthz_needs_no_redis(make_app: Any) -> None:
    app = make_app(redis_url="redis://127.0.0.1:1/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz(client: FlaskClient, published: FakeVersion) -> None:
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready" and body["version"] == published.version
    assert body["default_model"] == "als" and body["similar_models"] == ["itemknn", "content"]


def test_readyz_503_without_version_or_redis(client: FlaskClient, make_app: Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["error"]["ready"] is False
    dead = make_app(redis_url="redis://127.0.0.1:1/0").test_client().get("/readyz")
    assert dead.status_code == 503 and "unreachable" in dead.get_json()["error"]["message"]


@pytest.mark.usefixtures("published")
def test_metrics_count_requests_by_url_rule(client: FlaskClient) -> None:
    before = samples(client.get("/metrics").get_data(as_text=True))
    for user in ("u1", "u2", "stranger"):
        client.get(f"/v1/users/{user}/recommendations")
    client.get("/v1/popular?n=0")
    client.get("/no/such/thing")
    after = samples(client.get("/metrics").get_data(as_text=True))
    rule = "/v1/users/<path:user_id>/recommendations"

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("recsys_api_requests_total", endpoint=rule, method="GET", status="200") == 3
    assert delta("recsys_api_request_duration_seconds_count", endpoint=rule) == 3
    assert delta("recsys_api_fallbacks_total", endpoint=rule, reason="unknown_user") == 1
    assert delta("recsys_api_errors_total", endpoint="/v1/popular", status="400") == 1
    assert delta("recsys_api_errors_total", endpoint="<unmatched>", status="404") == 1
    # raw paths never become labels
    assert not any("u1" in str(labels) or "stranger" in str(labels) for _, labels in after)


def test_openapi_matches_the_routes_and_is_valid(app: Any, client: FlaskClient) -> None:
    from openapi_spec_validator import validate

    from serving.openapi import app_routes

    document = client.get("/openapi.json").get_json()
    validate(document)
    documented = {path: {m for m in item if m in {"get", "post", "put", "delete", "patch"}} for path, item in document["paths"].items()}
    assert documented == app_routes(app)
    for path, item in document["paths"].items():
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(__import__("re").findall(r"{(\w+)}", path)), path
    assert "/v1/users/{user_id}/recommendations" in document["paths"]


def test_serving_does_not_import_models_or_training_libraries() -> None:
    """Importing serving and building the app must not pull in recsys.models, pandas,
    implicit, surprise or sklearn; the message names who imported them."""
    script = textwrap.dedent(
        """
        import json, sys, traceback
        FORBIDDEN = ("recsys.models", "pandas", "implicit", "surprise", "sklearn")
        culprits = {}

        class Watch:
            def find_spec(self, name, path=None, target=None):
                root = name.split(".")[0]
                if (name in FORBIDDEN or root in FORBIDDEN) and root not in culprits and name not in culprits:
                    stack = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()
                             if "importlib" not in f.filename and "<frozen" not in f.filename]
                    culprits[name] = stack[-3:]
                return None

        sys.meta_path.insert(0, Watch())
        import serving
        app = serving.create_app({"REDIS_URL": "redis://127.0.0.1:1/0"})
        app.test_client().get("/healthz")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN or m.startswith("recsys.models"))
        print(json.dumps({"loaded": loaded[:20], "culprits": culprits}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [], json.dumps(report["culprits"], indent=1)


def test_metrics_report_the_live_version_age(client: FlaskClient, published: FakeVersion, redis_client: Any, layout: Any) -> None:
    import time

    from prometheus_client.parser import text_string_to_metric_families

    live = redis_client.get(layout.live)
    redis_client.zadd(layout.versions, {live: time.time() - 3600})
    body = client.get("/metrics").get_data(as_text=True)
    ages = [s.value for f in text_string_to_metric_families(body) for s in f.samples if s.name == "recsys_live_version_age_seconds"]
    assert len(ages) == 1 and 3590 < ages[0] < 3700


def test_metrics_without_live_version_leave_the_age_out(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"recsys_live_version_age_seconds" not in response.data
