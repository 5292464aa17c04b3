"""The commands: train, publish, pipeline, versions, rollback; errors as one line; the schedule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner, Result

from recsys.cli.demo import write_demo_data
from recsys.cli.main import cli, main
from recsys.store.keys import KeyLayout

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shop")
    write_demo_data(folder, users=200, items=80, interactions=6000, seed=3)
    return folder


def write_config(folder: Path, data_dir: Path, **extra: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.toml"
    body = f"""
[data]
path = "{data_dir}"

[training]
out = "runs"

[models.popular]
[models.itemknn]
k = 30
[models.rules]

[lists]
user_n = 5
similar_n = 5
together_n = 4
popular_n = 10

[publish]
default_model = "itemknn"
keep_versions = 3
"""
    for section, text in extra.items():
        body += f"\n[{section}]\n{text}\n"
    path.write_text(body, encoding="utf-8")
    return path


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def run_main(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recsys.cli.main", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})},
    )


def test_train_publish_pipeline_versions_rollback(
    tmp_path: Path, data_dir: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    config = write_config(tmp_path, data_dir)
    store = ["--redis", redis_url, "--prefix", key_prefix]
    trained = json.loads(invoke("train", "--config", str(config), "--json").stdout)
    run_dir = Path(trained["run_dir"])
    assert run_dir.parent == tmp_path / "runs" and (run_dir / "metadata.json").exists()
    assert trained["skipped"] == {}

    first = json.loads(invoke("publish", str(run_dir), *store, "--json").stdout)
    second = json.loads(invoke("pipeline", "--config", str(config), *store, "--json").stdout)
    layout = KeyLayout(key_prefix)
    assert redis_client.get(layout.live).decode() == second["version"]

    # Every configured list is published, with one field per user or item.
    meta = orjson.loads(redis_client.get(layout.meta(second["version"])))
    counts = trained["counts"]
    assert meta["user_models"] == ["popular", "itemknn", "rules"]
    assert meta["similar_models"] == ["itemknn"]
    assert meta["default_model"] == "itemknn" and meta["has_together"] and meta["has_popular"]
    assert meta["counts"]["user:itemknn"] == counts["users"]
    assert meta["counts"]["catalog"] == counts["items"]
    assert meta["counts"]["popular"] == len(meta["categories"]) + 1
    for name, fields in meta["counts"].items():
        kind, _, model = name.partition(":")
        key = {
            "user": lambda: layout.user_recs(second["version"], model),
            "similar": lambda: layout.similar(second["version"], model),
            "together": lambda: layout.together(second["version"]),
            "popular": lambda: layout.popular(second["version"]),
            "catalog": lambda: layout.catalog(second["version"]),
            "because_items": lambda: layout.because_items(second["version"]),
        }[kind]()
        assert redis_client.hlen(key) == fields > 0, name

    listed = json.loads(invoke("versions", *store, "--json").stdout)
    assert listed["live"] == second["version"]
    assert [v["version"] for v in listed["versions"]] == [second["version"], first["version"]]
    table = invoke("versions", *store).stdout.splitlines()
    assert table[0].split()[:2] == ["live", "version"]
    assert table[2].startswith("*") and second["version"] in table[2]

    rolled = json.loads(invoke("rollback", *store, "--json").stdout)
    assert rolled == {"previous": second["version"], "live": first["version"]}
    assert redis_client.get(layout.live).decode() == first["version"]
    assert "is already live" in invoke("rollback", "--to", first["version"], *store).stdout


def main_exit(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the real entry point in-process: (exit code, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(args)
    return int(done.value.code or 0), capsys.readouterr().err


def test_errors_are_one_line_and_exit_non_zero(
    tmp_path: Path, data_dir: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path, data_dir)
    started = time.monotonic()
    code, err = main_exit(["pipeline", "--config", str(config), "--redis", "redis://127.0.0.1:1/0"], capsys)
    assert time.monotonic() - started < 5
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: Redis unreachable at redis://127.0.0.1:1/0")
    assert not (tmp_path / "runs").exists()  # nothing trained when Redis is down

    bad = write_config(tmp_path / "bad", data_dir, **{"models.als": "factors = 'many'"})
    code, err = main_exit(["train", "--config", str(bad)], capsys)
    assert code == 1 and err.count("\n") == 1 and "models.als.factors: Input should be a valid integer" in err

    code, err = main_exit(["rollback", "--to", "nope", "--redis", redis_url, "--prefix", key_prefix], capsys)
    assert (code, err) == (1, "error: version 'nope' is unknown (completed versions: none)\n")

    code, err = main_exit(["train", "--config", str(config), "--data", str(tmp_path / "nowhere")], capsys)
    assert code == 1 and err.count("\n") == 1 and "nowhere" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert redis_client.get(KeyLayout(key_prefix).live) is None


def test_unreachable_redis_subprocess(tmp_path: Path, data_dir: Path) -> None:
    """The installed command, as a person runs it: exit 1, one line naming the URL."""
    config = write_config(tmp_path, data_dir)
    run_dir = json.loads(invoke("train", "--config", str(config), "--json").stdout)["run_dir"]
    started = time.monotonic()
    dead = run_main(["publish", run_dir, "--redis", "redis://127.0.0.1:1/0"])
    assert time.monotonic() - started < 15  # interpreter start-up included
    assert dead.returncode == 1
    assert dead.stderr.startswith("error: Redis unreachable at redis://127.0.0.1:1/0")
    assert dead.stderr.count("\n") == 1


@pytest.mark.slow
def test_schedule_survives_failed_runs_and_stops_on_sigterm(
    tmp_path: Path, data_dir: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    # The data disappears after the first run: later runs fail, the schedule goes on.
    moving = tmp_path / "data"
    moving.mkdir()
    for file in data_dir.iterdir():
        (moving / file.name).write_bytes(file.read_bytes())
    config = write_config(tmp_path, moving)
    process = subprocess.Popen(
        [sys.executable, "-m", "recsys.cli.main", "pipeline", "--config", str(config), "--every", "1s",
         "--redis", redis_url, "--prefix", key_prefix],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    layout = KeyLayout(key_prefix)
    try:
        deadline = time.monotonic() + 60
        while redis_client.zcard(layout.versions) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert redis_client.zcard(layout.versions) >= 1
        (moving / "interactions.parquet").unlink()
        time.sleep(1.5)  # a run that had read the data before it vanished has finished by now
        live = redis_client.get(layout.live)
        time.sleep(3.0)  # a few failing runs
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    failures = [line for line in stderr.splitlines() if "run failed:" in line]
    assert len(failures) >= 2 and all("interactions" in line for line in failures)
    assert "SIGTERM received" in stderr and "schedule stopped" in stderr
    assert redis_client.get(layout.live) == live  # failed runs never touch the live version


@pytest.mark.slow
def test_retrain_job_from_environment(tmp_path: Path, data_dir: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str) -> None:
    config = write_config(tmp_path, data_dir)
    env = {
        **os.environ, "OPENBLAS_NUM_THREADS": "1", "RECSYS_CONFIG": str(config), "RECSYS_EVERY": "once",
        "RECSYS_REDIS_URL": redis_url, "RECSYS_KEY_PREFIX": key_prefix,
    }
    done = subprocess.run([sys.executable, "-m", "jobs.retrain"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    layout = KeyLayout(key_prefix)
    live = redis_client.get(layout.live)
    assert live is not None and orjson.loads(redis_client.get(layout.meta(live.decode())))["default_model"] == "itemknn"

    env["RECSYS_DATA"] = str(tmp_path / "gone")
    failed = subprocess.run([sys.executable, "-m", "jobs.retrain"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and failed.stderr.strip().splitlines()[-1].startswith("error: ")
    assert redis_client.get(layout.live) == live
