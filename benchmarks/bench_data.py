"""Benchmark of the data layer: synthetic shop generation, loading, matrix building.

For each size (``--sizes``, millions of events allowed as ``1m``/``10m``), in this order:

* ``generate``: :func:`recsys.data.generate.generate_shop` (the frames, no file writing);
* ``load csv`` / ``load parquet``: :func:`recsys.data.loaders.load` of the written
  folder, validation included (skip both with ``--skip-load``);
* ``id maps``: ``IdMap.from_values`` for users and items;
* ``build_user_items``: the users x items matrix alone, on the loaded frame;
* ``Dataset.from_interactions``: every matrix (user_items, ratings, baskets, trending)
  and the aligned catalogue.

Each step reports seconds and the peak resident set size of the process during the step
(psutil, sampled every 10 ms) and its increase over the size before the step.

    python benchmarks/bench_data.py --sizes 1m,10m
    python benchmarks/bench_data.py --sizes 1m --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402

from recsys.data.dataset import Dataset  # noqa: E402
from recsys.data.generate import generate_shop  # noqa: E402
from recsys.data.idmap import IdMap  # noqa: E402
from recsys.data.loaders import load  # noqa: E402
from recsys.data.matrix import build_user_items  # noqa: E402

# Same shapes as benchmarks/bench_pipeline.py, so the figures line up.
SHAPES = {1_000_000: (50_000, 5_000), 10_000_000: (300_000, 20_000)}
T = TypeVar("T")


class PeakRSS:
    """Highest resident set size of this process while inside the block (sampled)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def measure(step: str, size: int, rows: list[dict[str, Any]], func: Callable[[], T]) -> T:
    gc.collect()
    with PeakRSS() as rss:
        started = time.perf_counter()
        result = func()
        seconds = time.perf_counter() - started
    rows.append(
        {
            "size": size,
            "step": step,
            "seconds": round(seconds, 2),
            "peak_rss_mb": round(rss.peak / 2**20),
            "rss_increase_mb": round((rss.peak - rss.start) / 2**20),
        }
    )
    print(f"  {step:<26} {seconds:8.2f} s", file=sys.stderr, flush=True)
    return result


def run_size(size: int, seed: int, skip_load: bool, rows: list[dict[str, Any]]) -> dict[str, Any]:
    users, items = SHAPES.get(size, (max(1, size // 20), max(2, size // 200)))
    print(f"{size:,} interactions ({users:,} users, {items:,} items)", file=sys.stderr)
    events, catalog = measure("generate", size, rows, lambda: generate_shop(users, items, size, seed))
    shape = {"size": size, "users": users, "items": items}
    if not skip_load:
        with tempfile.TemporaryDirectory(prefix="bench-data-") as folder:
            events.to_parquet(Path(folder) / "interactions.parquet", index=False)
            catalog.to_parquet(Path(folder) / "catalog.parquet", index=False)
            events.to_csv(Path(folder) / "interactions.csv", index=False)
            del events, catalog
            gc.collect()
            loaded = measure("load csv (validated)", size, rows, lambda: load(folder, "csv"))
            shape["csv_mb"] = round((Path(folder) / "interactions.csv").stat().st_size / 2**20)
            del loaded
            loaded = measure("load parquet (validated)", size, rows, lambda: load(folder, "parquet"))
            events, catalog = loaded.interactions, loaded.catalog
            shape["dropped"] = loaded.report.dropped
            del loaded
    user_map, item_map = measure(
        "id maps", size, rows, lambda: (IdMap.from_values(events["user_id"]), IdMap.from_values(events["item_id"]))
    )
    matrix = measure("build_user_items", size, rows, lambda: build_user_items(events, user_map, item_map))
    shape["nnz"] = int(matrix.nnz)
    del matrix
    dataset = measure("Dataset.from_interactions", size, rows, lambda: Dataset.from_interactions(events, catalog))
    shape["baskets"] = int(dataset.baskets.shape[0]) if dataset.baskets is not None else 0
    del dataset, events, catalog
    gc.collect()
    return shape


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * factor)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1m,10m", help="comma-separated event counts (1m, 10m, 250k...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-load", action="store_true", help="skip writing and loading CSV and Parquet")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)

    rows: list[dict[str, Any]] = []
    shapes = [run_size(parse_size(size), args.seed, args.skip_load, rows) for size in args.sizes.split(",")]
    result = {"machine": machine(), "shapes": shapes, "steps": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    info = result["machine"]
    print(f"machine: {info['nproc']} cores, {info['ram_gb']} GB RAM, {info['cpu']}, Python {info['python']}")
    header = f"{'interactions':>12}  {'step':<26} {'seconds':>8} {'peak RSS MB':>12} {'RSS +MB':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['size']:>12,}  {row['step']:<26} {row['seconds']:>8.2f} {row['peak_rss_mb']:>12,} {row['rss_increase_mb']:>8,}"
        )


if __name__ == "__main__":
    main()
