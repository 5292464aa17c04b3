"""``recsys demo`` on a fresh machine: no Redis configured -> the embedded one, shared with the job."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from recsys.store.codec import decode_list
from recsys.store.connection import EmbeddedRedis
from recsys.store.keys import KeyLayout

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_home() -> Iterator[Path]:
    """A short RECSYS_HOME (unix socket paths are limited to ~100 bytes); its Redis is stopped after."""
    home = Path("/tmp") / f"rcs-{uuid.uuid4().hex[:8]}"
    yield home
    EmbeddedRedis(home).stop()
    shutil.rmtree(home, ignore_errors=True)


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recsys.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_demo_then_pipeline_share_the_embedded_redis(fresh_home: Path, key_prefix: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RECSYS_REDIS_URL"}
    env.update(RECSYS_HOME=str(fresh_home), RECSYS_KEY_PREFIX=key_prefix, OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=str(REPO_ROOT))
    done = run(["demo", "--no-serve", "--users", "300", "--items", "120", "--interactions", "8000", "--seed", "1"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (fresh_home / "demo-data" / "interactions.parquet").exists()

    server = EmbeddedRedis(fresh_home)
    assert server.is_running()
    client = redis.Redis(unix_socket_path=str(server.socket))
    layout = KeyLayout(key_prefix)
    live = client.get(layout.live).decode()
    meta = orjson.loads(client.get(layout.meta(live)))
    assert {"popular", "itemknn", "content", "rules"} <= set(meta["user_models"])
    assert "svd" not in meta["user_models"]  # the demo shop has no ratings
    assert meta["has_together"] and meta["has_popular"] and meta["counts"]["catalog"] == 120

    # The printed example request names a user who really has recommendations.
    match = re.search(r"curl 'http://127\.0\.0\.1:8000/v1/users/([^/]+)/recommendations\?n=5'", done.stdout)
    assert match, done.stdout
    user_list = decode_list(client.hget(layout.user_recs(live, meta["default_model"]), match.group(1)))
    assert len(user_list["i"]) == 20

    # The job with no Redis URL configured publishes into the same embedded server.
    config = tmp_path / "job.toml"
    config.write_text(f'[data]\npath = "{fresh_home / "demo-data"}"\n[models.popular]\n[training]\nout = "runs"\n')
    again = run(["pipeline", "--config", str(config)], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert client.zcard(layout.versions) == 2
    assert client.get(layout.live).decode() != live
    for key in client.scan_iter(match=f"{key_prefix}*"):
        client.unlink(key)
    client.close()
