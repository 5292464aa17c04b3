"""The console in a real browser (headless Chromium driven by Playwright) against a real
server on 127.0.0.1 and a version published by the batch job: log in through the form,
look at every page, roll back from the page. Screenshots of each page go to a temp folder
(``RECSYS_TEST_SCREENSHOTS=/some/folder`` keeps copies).

Skipped without a chromium binary (Debian: ``apt-get install chromium``) or Playwright.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from werkzeug.serving import make_server

from recsys.pipeline.config import parse_config
from recsys.pipeline.run import publish_run
from recsys.store.keys import KeyLayout
from serving import create_app
from tests.serving.conftest import PipelineVersion

ADMIN = "browser-console-token"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found")]


@pytest.fixture(scope="module")
def server(redis_url: str, pipeline_version: PipelineVersion) -> Iterator[str]:
    app = create_app({"REDIS_URL": redis_url, "KEY_PREFIX": pipeline_version.prefix, "ADMIN_TOKEN": ADMIN})
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        yield page
        browser.close()


def shoot(page: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    keep = os.environ.get("RECSYS_TEST_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path


def test_console_pages_in_chromium(
    page: Any, server: str, pipeline_version: PipelineVersion, redis_url: str, tmp_path: Path
) -> None:
    page.goto(f"{server}/console")
    assert "needs the admin token" in page.content()
    shoot(page, tmp_path, "login")
    page.fill("#token", ADMIN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/console")
    assert ADMIN not in page.url
    assert page.inner_text("#live-version") == pipeline_version.version
    shoot(page, tmp_path, "overview")

    user = str(pipeline_version.events["user_id"].iloc[0])
    page.click("header >> text=User")
    page.wait_for_selector("input[name=user_id]")
    page.fill("input[name=user_id]", user)
    page.click("form.search button")
    page.wait_for_selector("#lists")
    default = pipeline_version.meta["default_model"]
    shown = page.eval_on_selector_all(f'[data-model="{default}"] li[data-item]', "els => els.map(e => e.dataset.item)")
    served = page.request.get(f"{server}/v1/users/{user}/recommendations?n=10").json()
    assert shown == [entry["item_id"] for entry in served["items"]]
    shoot(page, tmp_path, "user")

    page.click(f'[data-model="{default}"] li[data-item] a')
    page.wait_for_selector("#catalog")
    assert page.inner_text("h1").startswith("Item")
    shoot(page, tmp_path, "item")

    page.goto(f"{server}/console/experiments")
    shoot(page, tmp_path, "experiments")

    # Rollback from the page: publish the run again, then make the first version live.
    layout = KeyLayout(pipeline_version.prefix)
    client = redis.Redis.from_url(redis_url)
    second = publish_run(pipeline_version.run_dir, config=parse_config({"models": {"popular": {}}}),
                         redis_url=redis_url, prefix=pipeline_version.prefix)
    page.goto(f"{server}/console")
    page.click(f'tr[data-version="{second.previous}"] button')
    page.wait_for_selector("#confirm-rollback")
    shoot(page, tmp_path, "rollback-confirm")
    page.click("#confirm-rollback")
    page.wait_for_selector("#live-version")
    assert page.inner_text("#live-version") == second.previous
    assert client.get(layout.live).decode() == second.previous
    client.close()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        f"{n}.png" for n in ("login", "overview", "user", "item", "experiments", "rollback-confirm")
    )
