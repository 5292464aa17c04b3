"""Benchmark of the batch job: train + publish on ML-100K and synthetic shops, publish alone.

Scenarios (``--scenarios``, comma-separated):

* ``ml100k``: the whole pipeline on MovieLens 100K (``--datasets``);
* ``1m`` / ``10m`` / ``50m``: the whole pipeline on a synthetic shop with 1, 10 or 50
  million events, written as Parquet and read back through the loader like real data
  (``50m``: 1.5M users x 100k items with popular, itemknn, als, content and rules; about
  20 GB of memory, run it on a machine of its own);
* ``publish``: ``--lists`` synthetic user lists of length 20 written as Parquet to a run
  folder (as training writes them), then published from it.

For each: seconds and peak RSS per step (load, dataset, fit and lists per model, publish;
from the run's metadata.json), peak RSS of the train and publish phases (psutil, sampled
every 20 ms), Redis memory (INFO ``used_memory`` before/after publishing, plus ``MEMORY
USAGE`` of the version's keys), and the cost per million events and per million users of
each model and of the whole run.
Keys go under a dedicated prefix and are deleted afterwards.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pipeline.py --scenarios ml100k,1m,publish
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import pyarrow as pa  # noqa: E402
import redis  # noqa: E402

from recsys.pipeline.config import parse_config  # noqa: E402
from recsys.pipeline.run import make_publisher  # noqa: E402
from recsys.pipeline.train import train  # noqa: E402
from recsys.publish.publisher import Publisher  # noqa: E402
from recsys.runs.lists import ListWriter  # noqa: E402
from recsys.store.keys import KeyLayout  # noqa: E402

ALL_MODELS = ["popular", "itemknn", "userknn", "als", "ease", "svd", "content", "rules"]
SYNTHETIC = {
    "1m": {"users": 50_000, "items": 5_000, "interactions": 1_000_000},
    "10m": {"users": 300_000, "items": 20_000, "interactions": 10_000_000},
    "50m": {"users": 1_500_000, "items": 100_000, "interactions": 50_000_000},
}
# The models of each scenario (default: ALL_MODELS; a model whose data is missing, such as
# svd without ratings, is skipped by the pipeline and reported under "not_run").
MODELS_AT = {"50m": ["popular", "itemknn", "als", "content", "rules"]}
# Models left out of a scenario, and why (see BENCHMARKS.md).
SKIP_AT = {
    "50m": {
        "userknn": "not in the 50M scenario (1.5M users)",
        "ease": "100k items is above ease's max_items (a dense items x items matrix)",
    }
}


class PeakRSS:
    """Highest resident set size of this process while running (sampled)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def mb(self) -> float:
        return self.peak / 2**20


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "redis": None,
    }


def version_memory(client: redis.Redis, layout: KeyLayout, version: str) -> int:
    total = 0
    for key in client.scan_iter(match=f"{layout.version_root(version)}*", count=1000):
        total += int(client.memory_usage(key, samples=0) or 0)
    return total


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    batch = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


def costs(steps: dict[str, float], total: float, events: int, users: int, models: list[str]) -> dict[str, Any]:
    """Seconds per million events and per million users, per model (fit + its lists) and run."""

    def per(seconds: float) -> dict[str, float]:
        return {
            "seconds": round(seconds, 2),
            "per_million_events": round(seconds / (events / 1e6), 2) if events else 0.0,
            "per_million_users": round(seconds / (users / 1e6), 2) if users else 0.0,
        }

    by_model = {}
    for model in models:
        seconds = sum(v for k, v in steps.items() if k in (f"fit.{model}", f"lists.user.{model}", f"lists.similar.{model}"))
        if model == "rules":
            seconds += steps.get("lists.together", 0.0)
        if f"fit.{model}" in steps:
            by_model[model] = per(seconds)
    return {"models": by_model, "run": per(total)}


def run_pipeline_scenario(
    name: str, data_path: Path, data_format: str, models: list[str], client: redis.Redis, prefix: str, work: Path
) -> dict[str, Any]:
    skipped = {m: reason for m, reason in SKIP_AT.get(name, {}).items() if m in models}
    config = parse_config(
        {
            "data": {"path": str(data_path), "format": data_format},
            "models": {m: {} for m in models if m not in skipped},
            "training": {"out": str(work / "runs")},
            "lists": {"user_n": 20, "similar_n": 20, "together_n": 10, "popular_n": 50},
            "publish": {"keep_versions": 1},
        }
    )
    layout = KeyLayout(prefix)
    started, cpu_started = time.perf_counter(), time.process_time()
    with PeakRSS() as train_rss:
        run_dir = train(config, show_progress=False)
    train_seconds = time.perf_counter() - started
    train_cpu = time.process_time() - cpu_started
    with open(run_dir / "metadata.json", encoding="utf-8") as handle:
        metadata = json.load(handle)
    used_before = int(client.info("memory")["used_memory"])
    with PeakRSS() as publish_rss:
        result = make_publisher(config, client, layout, show_progress=False).publish_run(run_dir)
    used_after = int(client.info("memory")["used_memory"])
    keys_bytes = version_memory(client, layout, result.version)
    delete_prefix(client, prefix)
    shutil.rmtree(work / "runs", ignore_errors=True)
    steps = {**metadata["timings"], "publish": round(result.seconds, 3)}
    counts = metadata["counts"]
    return {
        "scenario": name,
        "counts": counts,
        "models": list(config.models),
        "not_run": {**skipped, **metadata["skipped"]},
        "steps": steps,
        "step_peak_rss_mb": metadata.get("peak_rss_mb", {}).get("steps", {}),
        "step_cpu_seconds": metadata.get("cpu_seconds", {}),
        "train_cpu_seconds": round(train_cpu, 2),
        "cost": costs(steps, train_seconds + result.seconds, counts["interactions"], counts["users"], list(config.models)),
        "train_seconds": round(train_seconds, 2),
        "publish_seconds": round(result.seconds, 2),
        "total_seconds": round(train_seconds + result.seconds, 2),
        "lists": result.lists,
        "lists_per_second": round(result.lists_per_second),
        "peak_rss_mb": {"train": round(train_rss.mb), "publish": round(publish_rss.mb)},
        "redis_used_memory_mb": {"before": round(used_before / 2**20, 1), "after": round(used_after / 2**20, 1)},
        "redis_version_mb": round(keys_bytes / 2**20, 1),
    }


def publish_only(
    n_lists: int, client: redis.Redis, prefix: str, work: Path, n: int = 20, n_items: int = 20_000
) -> dict[str, Any]:
    """Synthetic user lists written to a run folder as training writes them (Parquet, a row
    group per 4,096 users), then published from the folder as ``recsys publish`` does."""
    rng = np.random.default_rng(0)
    users = pa.array(np.char.add("user-", np.arange(n_lists).astype(str)))
    items = pa.array(np.char.add("item-", np.arange(n_items).astype(str)))
    run = work / "publish-run"
    started, cpu_started = time.perf_counter(), time.process_time()
    with PeakRSS() as write_rss:
        with ListWriter(run, "user", "bench", n, key_names=users, item_names=items) as writer:
            for start in range(0, n_lists, 4096):
                rows = np.arange(start, min(start + 4096, n_lists))
                ids = rng.integers(0, n_items, size=(len(rows), n), dtype=np.int32)
                scores = -np.sort(-rng.random((len(rows), n), dtype=np.float32), axis=1)
                writer.write(rows, ids, scores)
        entry = writer.close()
    write_seconds, write_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    with open(run / "metadata.json", "w", encoding="utf-8") as handle:
        json.dump({"format_version": 2, "run": "bench", "backend": "local", "lists": [entry]}, handle)
    file_mb = sum(p.stat().st_size for p in (run / entry["path"]).iterdir()) / 2**20
    layout = KeyLayout(prefix)
    publisher = Publisher(client, layout, keep_versions=1, show_progress=False)
    used_before = int(client.info("memory")["used_memory"])
    cpu_started = time.process_time()
    with PeakRSS() as rss:
        result = publisher.publish_run(run)
    publish_cpu = time.process_time() - cpu_started
    used_after = int(client.info("memory")["used_memory"])
    keys_bytes = version_memory(client, layout, result.version)
    delete_prefix(client, prefix)
    shutil.rmtree(run, ignore_errors=True)
    return {
        "scenario": f"publish {n_lists} lists",
        "lists": result.lists,
        "list_length": n,
        "parquet_write_seconds": round(write_seconds, 3),
        "parquet_write_cpu_seconds": round(write_cpu, 3),
        "parquet_mb": round(file_mb, 1),
        "write_seconds": round(result.write_seconds, 3),
        "publish_seconds": round(result.seconds, 3),
        "publish_cpu_seconds": round(publish_cpu, 3),
        "lists_per_second": round(result.lists_per_second),
        "peak_rss_mb": {"write": round(write_rss.mb), "publish": round(rss.mb)},
        "redis_used_memory_mb": {"before": round(used_before / 2**20, 1), "after": round(used_after / 2**20, 1)},
        "redis_version_mb": round(keys_bytes / 2**20, 1),
    }


def print_table(results: list[dict[str, Any]]) -> None:
    for result in results:
        print(f"\n== {result['scenario']}")
        if "counts" in result:
            c = result["counts"]
            print(f"data: {c['interactions']:,} interactions, {c['users']:,} users, {c['items']:,} items; models: {', '.join(result['models'])}")
            if result["not_run"]:
                print("not run: " + "; ".join(f"{k} ({v})" for k, v in result["not_run"].items()))
            width = max(len(k) for k in result["steps"])
            peaks = result.get("step_peak_rss_mb", {})
            cpu = result.get("step_cpu_seconds", {})
            for step, seconds in result["steps"].items():
                peak = f"  cpu {cpu[step]:8.2f} s  peak {peaks[step]:8.0f} MB" if step in peaks else ""
                print(f"  {step.ljust(width)}  {seconds:9.2f} s{peak}")
            print(f"  {'total'.ljust(width)}  {result['total_seconds']:9.2f} s")
            cost = result["cost"]
            for model, figures in {**cost["models"], "whole run": cost["run"]}.items():
                print(
                    f"  cost {model}: {figures['per_million_events']:.2f} s per million events, "
                    f"{figures['per_million_users']:.2f} s per million users"
                )
        if "parquet_mb" in result:
            print(
                f"Parquet: written in {result['parquet_write_seconds']:.2f} s ({result['parquet_write_cpu_seconds']:.2f} s CPU), "
                f"{result['parquet_mb']} MB; publish {result['publish_seconds']:.2f} s ({result['publish_cpu_seconds']:.2f} s CPU)"
            )
        print(
            f"lists: {result['lists']:,} at {result['lists_per_second']:,}/s; peak RSS {result['peak_rss_mb']} MB; "
            f"Redis used_memory {result['redis_used_memory_mb']['before']} -> {result['redis_used_memory_mb']['after']} MB "
            f"(version keys {result['redis_version_mb']} MB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="ml100k,1m,publish")
    parser.add_argument("--redis", default=os.environ.get("RECSYS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--datasets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--lists", type=int, default=200_000, help="lists for the publish scenario")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--models", default=None, help="comma-separated models instead of each scenario's own")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    client = redis.Redis.from_url(args.redis, socket_timeout=60)
    info = machine()
    info["load_average_at_start"] = os.getloadavg()
    info["redis"] = client.info("server")["redis_version"]
    prefix = f"bench-pipeline:{uuid.uuid4().hex[:8]}:"
    results = []
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        for scenario in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
            if scenario == "ml100k":
                models = args.models.split(",") if args.models else ALL_MODELS
                results.append(run_pipeline_scenario("ml100k", args.datasets / "ml-100k", "movielens-100k", models, client, prefix, work))
            elif scenario in SYNTHETIC:
                from recsys.cli.demo import write_demo_data

                sizes = SYNTHETIC[scenario]
                started = time.perf_counter()
                write_demo_data(work / scenario, sizes["users"], sizes["items"], sizes["interactions"], seed=0)
                generated = time.perf_counter() - started
                models = args.models.split(",") if args.models else MODELS_AT.get(scenario, ALL_MODELS)
                result = run_pipeline_scenario(scenario, work / scenario, "auto", models, client, prefix, work)
                result["generate_seconds"] = round(generated, 2)
                shutil.rmtree(work / scenario, ignore_errors=True)
                results.append(result)
            elif scenario == "publish":
                results.append(publish_only(args.lists, client, prefix, work))
            else:
                parser.error(f"unknown scenario {scenario!r}")
            results[-1]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
            print_table(results[-1:])
            sys.stdout.flush()
            if args.json:
                with open(args.json, "w", encoding="utf-8") as handle:
                    json.dump({"machine": info, "results": results}, handle, indent=2)
    finally:
        delete_prefix(client, prefix)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmachine: {info}; load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
