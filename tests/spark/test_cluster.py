"""A real standalone Spark cluster on this machine: a master and two workers started from
the pyspark installation, on loopback; the pipeline trains on it, the existing publisher
publishes the run, and the lists are read back from Redis."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from recsys.runs.folder import RUN_FORMAT_VERSION
from recsys.store.codec import decode_list
from recsys.store.keys import KeyLayout
from tests.conftest import REPO_ROOT
from tests.spark.conftest import SKIP_REASON

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")]
RECSYS = str(Path(sys.executable).with_name("recsys"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cluster_env(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_WORKER_DIR=str(folder / "work"),
        SPARK_LOG_DIR=str(folder / "logs"),
        PYSPARK_PYTHON=sys.executable,
        PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def wait_for(path: Path, text: str, count: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(errors="replace").count(text) >= count:
            return
        if process.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"{text!r} x{count} not seen in {path}:\n{path.read_text(errors='replace')[-3000:] if path.exists() else ''}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """spark://127.0.0.1:PORT of a master with two registered workers; stopped afterwards."""
    import pyspark

    folder = tmp_path_factory.mktemp("spark-cluster")
    spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
    env = cluster_env(folder)
    port = free_port()
    master_url = f"spark://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        master_log = folder / "master.log"
        with open(master_log, "wb") as log:
            processes.append(
                subprocess.Popen(
                    [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(port), "--webui-port", str(free_port())],
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
        wait_for(master_log, "I have been elected leader", 1, 90, processes[0])
        for k in range(2):
            with open(folder / f"worker{k}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(
                        [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                         "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()), master_url],
                        env=env, stdout=log, stderr=subprocess.STDOUT,
                    )  # fmt: skip
                )
        wait_for(master_log, "Registering worker 127.0.0.1", 2, 90, processes[0])
        yield master_url
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def cluster_run(cluster: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`recsys train --backend spark` on the cluster, a generated shop as CSV."""
    from recsys.data.generate import generate_shop

    folder = tmp_path_factory.mktemp("spark-cluster-run")
    interactions, catalog = generate_shop(200, 60, 3000, seed=11)
    (folder / "shop").mkdir()
    interactions.to_csv(folder / "shop" / "interactions.csv", index=False)
    catalog.to_csv(folder / "shop" / "catalog.csv", index=False)
    config = folder / "recsys.toml"
    config.write_text(
        f"""
[data]
path = "shop"
[training]
backend = "spark"
out = "runs"
[spark]
master = "{cluster}"
app_name = "recsys-cluster-test"
[spark.conf]
"spark.ui.enabled" = false
"spark.executor.memory" = "512m"
"spark.executor.cores" = 1
"spark.cores.max" = 2
"spark.sql.shuffle.partitions" = 4
"spark.executorEnv.PYTHONPATH" = "{REPO_ROOT}"
[models.popular]
[models.als]
factors = 8
iterations = 3
[models.rules]
[publish]
default_model = "als"
"""
    )
    done = subprocess.run(
        [RECSYS, "train", "--config", str(config), "--json"],
        env=cluster_env(folder), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    return {"run_dir": Path(result["run_dir"]), "config": config, "interactions": interactions, "train": result}


def test_trains_on_a_standalone_cluster(cluster_run: dict[str, Any]) -> None:
    run = cluster_run["run_dir"]
    with open(run / "metadata.json", encoding="utf-8") as handle:
        meta = json.load(handle)
    assert meta["spark"]["master"].startswith("spark://127.0.0.1:")
    assert meta["backend"] == "spark" and meta["format_version"] == 2
    kinds = {entry["path"]: entry["rows"] for entry in meta["lists"]}
    assert kinds["lists/user.als"] == meta["counts"]["users"] > 100
    assert kinds["lists/together"] > 0 and kinds["lists/popular"] >= 1
    # Written by the executors: Spark's part files and its success marker.
    assert list((run / "lists" / "user.als").glob("part-*.parquet")) and (run / "lists" / "user.als" / "_SUCCESS").exists()


@pytest.mark.xfail(
    RUN_FORMAT_VERSION != 2,
    reason=f"the publisher reads run format {RUN_FORMAT_VERSION}; the Spark backend writes format 2",
    strict=False,
)
def test_cluster_run_published_and_read_back_from_redis(
    cluster_run: dict[str, Any], redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    done = subprocess.run(
        [RECSYS, "publish", str(cluster_run["run_dir"]), "--redis", redis_url, "--prefix", key_prefix, "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    version = json.loads(done.stdout)["version"]
    layout = KeyLayout(key_prefix)
    assert redis_client.get(layout.live).decode() == version
    frame = cluster_run["interactions"]
    user = str(frame["user_id"].iloc[0])
    listed = decode_list(redis_client.hget(layout.user_recs(version, "als"), user))
    assert len(listed["i"]) == 20
    seen = set(frame.loc[frame["user_id"].astype(str) == user, "item_id"].astype(str))
    assert not set(map(str, listed["i"])) & seen
    together = next(e for e in cluster_run["train"]["lists"] if e["kind"] == "together")
    assert redis_client.hlen(layout.together(version)) == together["rows"] > 0
