"""The dashboard rendered by a real browser (headless Chromium) from a real server on 127.0.0.1.

Skipped when no chromium binary is installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from werkzeug.serving import make_server

from recsys.abtest.assignment import assign_many
from recsys.abtest.events import validate_events, write_events
from recsys.abtest.experiments import Experiment, ExperimentStore, Variant
from recsys.store.keys import KeyLayout
from serving import create_app

ADMIN = "browser-admin-token"
#: Set RECSYS_TEST_SCREENSHOT=/path/out.png to keep the screenshot for a look.
SCREENSHOT_COPY = os.environ.get("RECSYS_TEST_SCREENSHOT")
CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found"),
]


@pytest.fixture
def server(redis_url: str, key_prefix: str, redis_client: redis.Redis) -> Iterator[str]:
    app = create_app({"REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "ADMIN_TOKEN": ADMIN})

    def authenticating_proxy(environ: dict, start_response: object) -> object:
        """What a reverse proxy in front of the dashboard does: add the bearer header
        (requests to /signed-in/...; the token is never part of a URL)."""
        path = environ.get("PATH_INFO", "")
        if path.startswith("/signed-in/"):
            environ["PATH_INFO"] = path.removeprefix("/signed-in")
            environ["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN}"
        return app(environ, start_response)

    httpd = make_server("127.0.0.1", 0, authenticating_proxy, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(5)


def seed_experiments(client: redis.Redis, layout: KeyLayout) -> None:
    """A finished experiment with a clear CTR lift and, after it, a running one with a broken split."""
    store = ExperimentStore(client, layout)
    now = time.time()
    rng = np.random.default_rng(3)
    lifted = Experiment(
        name="homepage-ranking", salt="a", start=now - 7200, end=now - 600, description="ALS vs EASE on the home page",
        variants=[Variant(name="control", model="als"), Variant(name="treatment", model="ease")],
    )
    broken = Experiment(
        name="checkout-widget", salt="b", start=now - 500,
        variants=[Variant(name="control", model="als", weight=1), Variant(name="bigger", model="itemknn", weight=1)],
    )
    store.create(lifted, now=now - 7200)
    store.create(broken, now=now)
    raw: list[dict[str, object]] = []
    users = np.array([f"u{k}" for k in range(3000)])
    for experiment, start, ctr in ((lifted, now - 7000, {"control": 0.08, "treatment": 0.11}),
                                   (broken, now - 400, {"control": 0.1, "bigger": 0.1})):
        variants = assign_many(experiment, users)
        for user, variant in zip(users, variants):
            if experiment is broken and variant == "bigger" and rng.random() < 0.3:
                continue  # lost logging: the SRM check must flag it
            raw += [{"type": "impression", "user_id": user, "item_id": f"i{k}", "timestamp": start} for k in range(4)]
            for _ in range(rng.binomial(4, ctr[variant])):
                raw.append({"type": "click", "user_id": user, "item_id": "i1", "timestamp": start + 1})
            if rng.random() < 0.05:
                raw.append({"type": "purchase", "user_id": user, "item_id": "i1",
                            "value": float(rng.lognormal(3, 0.5)), "timestamp": start + 2})
    for begin in range(0, len(raw), 500):
        write_events(client, layout, validate_events(raw[begin : begin + 500], now=now))


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_dashboard_renders_in_chromium(server: str, redis_client: redis.Redis, key_prefix: str, tmp_path: Path) -> None:
    seed_experiments(redis_client, KeyLayout(key_prefix))

    denied = chromium("--dump-dom", f"{server}/dashboard", profile=tmp_path / "p1")
    assert "admin token" in denied.stdout and "homepage-ranking" not in denied.stdout

    result = chromium("--dump-dom", f"{server}/signed-in/dashboard", profile=tmp_path / "p2")
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'data-experiment="homepage-ranking"' in dom and 'data-experiment="checkout-widget"' in dom
    assert dom.count("<svg") == 2 and "<rect" in dom
    assert 'data-srm="mismatch"' in dom and "SRM warning" in dom
    assert 'class="sig-up"' in dom  # treatment's CTR lift is significant

    shot = tmp_path / "dashboard.png"
    result = chromium(f"--screenshot={shot}", "--window-size=1200,900", f"{server}/signed-in/dashboard", profile=tmp_path / "p3")
    assert shot.exists(), result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if SCREENSHOT_COPY:
        shutil.copy(shot, SCREENSHOT_COPY)
