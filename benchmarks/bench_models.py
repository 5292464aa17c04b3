"""Per-model cost: fit time, top-N for every user and every item, memory, artifact size.

For each data set and each model (default parameters, one fresh Python process per model
so that memory figures are not polluted by the previous model):

* ``fit_s``: ``model.fit(dataset)``;
* ``rec_all_s``: ``iter_recommend_all(n)`` consumed fully (top-``n`` for all users, seen
  items excluded), the work of publishing user lists;
* ``sim_all_s``: ``iter_similar_all(n)`` consumed fully (top-``n`` similar items for all items);
* ``save_s`` and ``artifact_mb``: ``model.save`` to a temporary folder, size on disk;
* memory, from the kernel's peak resident set size (VmHWM, reset before each phase through
  ``/proc/self/clear_refs``; sampled with psutil where that is not available):
  ``rss_data_mb`` is the process after building the data set (the baseline), ``fit_mb`` /
  ``rec_mb`` / ``sim_mb`` the peak of each phase above that baseline, ``model_mb`` what the
  fitted model still holds after fit, ``peak_mb`` the process's absolute peak over the phases.

Data sets: ``ml100k`` (MovieLens 100K through the loader), ``synthetic1m`` (1,000,000
events of a generated shop, 50k users x 20k items, fixed seed) and ``synthetic10m``
(10,000,000 events, 300k users x 20k items: the shape of bench_pipeline's ``10m`` scenario;
not in the default list, run it one model at a time). A model that cannot run on a
data set (svd without ratings, rules without baskets) is reported as refused with the model's
own message. Timings go to stderr as they come, the table to stdout.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_models.py
    python benchmarks/bench_models.py --models als,ease --datasets synthetic1m --json out.json
    python benchmarks/bench_models.py --repeat 2      # lower of two runs per figure
    python benchmarks/bench_models.py --datasets synthetic10m --models als --n 20 --skip-similar

``--threads`` sets the models' thread count (default: all cores); the top-N of user blocks is
computed on that many threads.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Before numpy loads OpenBLAS: implicit wants single-threaded BLAS (it threads itself).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

DEFAULT_ML100K = Path("/work/shared/datasets/ml-100k")
DATASETS = ("ml100k", "synthetic1m")
ALL_DATASETS = (*DATASETS, "synthetic10m")
SYNTHETIC = {"users": 50_000, "items": 20_000, "interactions": 1_000_000, "seed": 7}
SYNTHETIC_SIZES = {"synthetic1m": SYNTHETIC, "synthetic10m": {"users": 300_000, "items": 20_000, "interactions": 10_000_000, "seed": 7}}
TIME_FIELDS = ("data_s", "fit_s", "fit_cpu_s", "rec_all_s", "sim_all_s", "save_s")
MEMORY_FIELDS = ("rss_data_mb", "fit_mb", "model_mb", "rec_mb", "sim_mb", "peak_mb")
COLUMNS = (
    ("model", "model"),
    ("status", "status"),
    ("fit_s", "fit s"),
    ("rec_all_s", "top-N users s"),
    ("sim_all_s", "top-N items s"),
    ("save_s", "save s"),
    ("rss_data_mb", "data RSS MB"),
    ("fit_mb", "fit +MB"),
    ("model_mb", "model +MB"),
    ("rec_mb", "users +MB"),
    ("sim_mb", "items +MB"),
    ("peak_mb", "peak RSS MB"),
    ("artifact_mb", "artifact MB"),
    ("load1", "load avg"),
)
MB = 1e6


# ---------------------------------------------------------------------- memory
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak RSS of this process to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


class PeakRSS:
    """Peak resident set size (bytes) of this process over a ``with`` block.

    Uses VmHWM after resetting it; falls back to sampling RSS every 10 ms in a thread.
    """

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0
        self.exact = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.01)

    def __enter__(self) -> PeakRSS:
        self.peak = self.process.memory_info().rss
        self.exact = _reset_peak()
        if not self.exact:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        hwm = _status_kb("VmHWM") if self.exact else None
        self.peak = max(self.peak, hwm * 1024 if hwm is not None else 0, self.process.memory_info().rss)


def rss() -> int:
    return psutil.Process().memory_info().rss


@contextmanager
def phase(result: dict[str, Any], seconds_key: str, memory_key: str, baseline: int) -> Iterator[None]:
    """Time a block into ``result[seconds_key]``, its peak RSS above ``baseline`` into ``result[memory_key]``."""
    with PeakRSS() as peak:
        start = time.perf_counter()
        yield
        result[seconds_key] = time.perf_counter() - start
    result[memory_key] = (peak.peak - baseline) / MB
    result["peak_mb"] = max(result.get("peak_mb", 0.0), peak.peak / MB)
    result["peak_exact"] = peak.exact


# ----------------------------------------------------------------------- data
def build_dataset(name: str, ml100k: Path) -> Any:
    """The Dataset of ``name``: ML-100K through the loader, or the generated shop."""
    from recsys.data.dataset import Dataset

    if name == "ml100k":
        from recsys.data.loaders import load

        data = load(ml100k, format="movielens-100k")
        return Dataset.from_interactions(data.interactions, data.catalog)
    if name in SYNTHETIC_SIZES:
        from recsys.data.generate import generate_shop

        sizes = SYNTHETIC_SIZES[name]
        interactions, catalog = generate_shop(sizes["users"], sizes["items"], sizes["interactions"], seed=sizes["seed"])
        return Dataset.from_interactions(interactions, catalog)
    raise click.BadParameter(f"unknown data set {name!r} (available: {', '.join(DATASETS)})")


def describe_dataset(dataset: Any) -> dict[str, Any]:
    return {
        "users": dataset.n_users,
        "items": dataset.n_items,
        "nnz": int(dataset.user_items.nnz),
        "interactions": dataset.info.get("interactions"),
        "ratings": None if dataset.ratings is None else int(dataset.ratings.nnz),
        "baskets": None if dataset.baskets is None else int(dataset.baskets.shape[0]),
        "catalog": dataset.catalog is not None,
    }


# ---------------------------------------------------------------------- worker
def _consume(
    iterator: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], rows: int, n: int, cols: int, what: str
) -> None:
    """Drain an ``iter_*_all`` iterator, checking it covers ``rows`` queries with valid (batch, n) ids."""
    seen = 0
    for queries, ids, scores in iterator:
        if ids.shape != (len(queries), n) or scores.shape != ids.shape:
            raise AssertionError(f"{what}: batch of {len(queries)} gave ids {ids.shape}, scores {scores.shape}")
        if ids.size and (ids.min() < -1 or ids.max() >= cols):
            raise AssertionError(f"{what}: item index out of range [{ids.min()}, {ids.max()}]")
        seen += len(queries)
    if seen != rows:
        raise AssertionError(f"{what}: covered {seen} of {rows} rows")


def run_one(
    model_name: str, dataset_name: str, n: int, ml100k: Path, *, similar: bool = True, threads: int = 0
) -> dict[str, Any]:
    """Measure one model on one data set in this process (call it in a fresh process)."""
    from recsys.errors import RecsysError
    from recsys.models.registry import get_model_class

    result: dict[str, Any] = {"model": model_name, "dataset": dataset_name, "n": n, "load1": os.getloadavg()[0]}
    start = time.perf_counter()
    dataset = build_dataset(dataset_name, ml100k)
    result["data_s"] = time.perf_counter() - start
    result["data"] = describe_dataset(dataset)
    model = get_model_class(model_name)()  # imports the model's libraries before the baseline
    model.threads = threads
    result["model_threads"] = threads
    result["config"] = model.config.model_dump(mode="json")
    gc.collect()
    baseline = rss()
    result["rss_data_mb"] = baseline / MB
    cpu_start = time.process_time()
    try:
        with phase(result, "fit_s", "fit_mb", baseline):
            model.fit(dataset)
    except RecsysError as error:
        result.update(status="refused", reason=str(error))
        return result
    result["fit_cpu_s"] = time.process_time() - cpu_start
    gc.collect()
    result["model_mb"] = (rss() - baseline) / MB
    with phase(result, "rec_all_s", "rec_mb", baseline):
        _consume(model.iter_recommend_all(n), model.n_users, n, model.n_items, "iter_recommend_all")
    if similar:
        with phase(result, "sim_all_s", "sim_mb", baseline):
            _consume(model.iter_similar_all(n), model.n_items, n, model.n_items, "iter_similar_all")
    with tempfile.TemporaryDirectory(prefix="bench-models-") as folder:
        start = time.perf_counter()
        model.save(Path(folder) / "model")
        result["save_s"] = time.perf_counter() - start
        result["artifact_mb"] = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / MB
    result["threads"] = thread_settings()
    result["status"] = "ok"
    return result


# ---------------------------------------------------------------------- parent
def thread_settings() -> dict[str, Any]:
    """Environment thread variables and the thread pools threadpoolctl sees in this process."""
    from threadpoolctl import threadpool_info

    env = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    pools = [
        f"{i['user_api']}:{i['internal_api']} {i.get('version') or ''} x{i['num_threads']}".replace("  ", " ")
        for i in threadpool_info()
    ]
    return {"env": env, "pools": pools}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import implicit
    import scipy
    import surprise

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "implicit": implicit.__version__,
        "surprise": surprise.__version__,
        "threads": thread_settings(),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


def run_isolated(
    model_name: str, dataset_name: str, n: int, ml100k: Path, timeout: float, *, similar: bool = True, threads: int = 0
) -> dict[str, Any]:
    """``run_one`` in a fresh interpreter; the result is the last line it prints (JSON)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", f"{model_name}:{dataset_name}"]
    command += ["--n", str(n), "--ml100k", str(ml100k), "--threads", str(threads)]
    if not similar:
        command.append("--skip-similar")
    base = {"model": model_name, "dataset": dataset_name, "n": n}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {**base, "status": "timeout", "reason": f"no result within {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return {**base, "status": "error", "reason": tail[0]}
    return json.loads(lines[-1])


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated runs: the lower value of every time and memory figure."""
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return {**runs[-1], "runs": len(runs)}
    # Defaults can change between runs while the code is edited: only compare like with like.
    ok = [r for r in ok if r.get("config") == ok[-1].get("config")]
    row = dict(ok[0])
    for key in TIME_FIELDS + MEMORY_FIELDS:
        values = [r[key] for r in ok if r.get(key) is not None]
        if values:
            row[key] = min(values)
    row["load1"] = max(r["load1"] for r in ok)
    row["runs"] = len(ok)
    return row


def format_cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if key == "load1":
            return f"{value:.1f}"
        if key.endswith("_mb"):
            return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"
        return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return str(value)


def table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """Aligned text (or Markdown) table of result rows; refusals keep only their reason."""
    header = [label for _, label in COLUMNS]
    cells = []
    for row in rows:
        if row.get("status") == "ok":
            cells.append([format_cell(key, row.get(key)) for key, _ in COLUMNS])
        else:
            cells.append([row["model"], row["status"]] + ["-"] * (len(COLUMNS) - 2))
    widths = [max(len(header[i]), *(len(c[i]) for c in cells)) for i in range(len(header))]
    right = [i >= 2 for i in range(len(header))]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "| " + " | ".join(parts) + " |" if markdown else "  ".join(parts)

    if markdown:
        rule = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right)) + "|"
    else:
        rule = "  ".join("-" * w for w in widths)
    out = [line(header), rule]
    out.extend(line(c) for c in cells)
    notes = [f"{row['model']}: {row['status']}: {row.get('reason', '')}" for row in rows if row.get("status") != "ok"]
    configs = [f"{row['model']}: {json.dumps(row['config'], separators=(',', ':'))}" for row in rows if "config" in row]
    if notes:
        out += [""] + notes
    if configs:
        out += ["", "parameters (defaults):"] + configs
    return "\n".join(out)


def progress_line(result: dict[str, Any]) -> str:
    if result["status"] != "ok":
        return f"{result['status']} {result.get('reason', '')}"
    items = f"{result['sim_all_s']:.2f}s" if "sim_all_s" in result else "skipped"
    return f"ok fit {result['fit_s']:.2f}s users {result['rec_all_s']:.2f}s items {items} (load {result['load1']:.1f})"


def _split(value: str | None, allowed: list[str] | tuple[str, ...], what: str) -> list[str]:
    if not value:
        return list(allowed)
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in names if v not in allowed]
    if unknown:
        raise click.BadParameter(f"unknown {what} {', '.join(unknown)} (available: {', '.join(allowed)})")
    return names


@click.command()
@click.option("--models", help="comma-separated registry names (default: all)")
@click.option("--datasets", help=f"comma-separated, of {', '.join(DATASETS)} (default: both)")
@click.option("--n", "n", type=click.IntRange(min=1), default=100, show_default=True, help="list length")
@click.option(
    "--repeat", type=click.IntRange(min=1), default=1, show_default=True, help="runs per model; the table keeps the lower figures"
)
@click.option("--timeout", type=float, default=1800.0, show_default=True, help="seconds per model run")
@click.option("--ml100k", type=click.Path(path_type=Path), default=DEFAULT_ML100K, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="write all results to this file")
@click.option("--markdown", is_flag=True, help="print Markdown tables")
@click.option("--skip-similar", is_flag=True, help="leave out the similar-items phase (sim_all_s)")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="model threads; 0 = all cores")
@click.option("--worker", hidden=True, help="MODEL:DATASET: measure one pair in this process, print JSON")
def main(
    models: str | None,
    datasets: str | None,
    n: int,
    repeat: int,
    timeout: float,
    ml100k: Path,
    json_out: Path | None,
    markdown: bool,
    skip_similar: bool,
    threads: int,
    worker: str | None,
) -> None:
    """Fit time, top-N for all users and items, memory and artifact size of every model."""
    if worker:
        model_name, dataset_name = worker.split(":")
        try:
            result = run_one(model_name, dataset_name, n, ml100k, similar=not skip_similar, threads=threads)
        except Exception as error:  # reported by the parent as this model's error
            traceback.print_exc()
            reason = f"{type(error).__name__}: {error}"
            result = {"model": model_name, "dataset": dataset_name, "n": n, "status": "error", "reason": reason}
        click.echo(json.dumps(result))
        return

    from recsys.models.registry import model_names

    model_list = _split(models, model_names(), "model")
    dataset_list = _split(datasets, ALL_DATASETS, "data set") if datasets else list(DATASETS)
    info = machine()
    click.echo(
        f"# {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB; Python {info['python']}, numpy {info['numpy']}, "
        f"scipy {info['scipy']}, implicit {info['implicit']}, surprise {info['surprise']}",
    )
    click.echo(f"# threads: {info['threads']['env']} {'; '.join(info['threads']['pools'])}; load average {info['loadavg']}")
    report: dict[str, Any] = {"machine": info, "n": n, "repeat": repeat, "synthetic": SYNTHETIC_SIZES, "datasets": {}}
    for dataset_name in dataset_list:
        if dataset_name == "ml100k" and not (ml100k / "u.data").is_file():
            click.echo(f"\n{dataset_name}: skipped, {ml100k / 'u.data'} not found")
            continue
        rows = []
        for model_name in model_list:
            runs = []
            for attempt in range(repeat):
                result = run_isolated(
                    model_name, dataset_name, n, ml100k, timeout, similar=not skip_similar, threads=threads
                )
                runs.append(result)
                click.echo(f"{dataset_name} {model_name} [{attempt + 1}/{repeat}]: {progress_line(result)}", err=True)
                if result["status"] != "ok":
                    break
            rows.append({**best_of(runs), "all_runs": runs})
        data = next((r["data"] for r in rows if "data" in r), {})
        report["datasets"][dataset_name] = {"data": data, "results": rows}
        shape = f"{data.get('users')} users x {data.get('items')} items, {data.get('nnz')} user-item pairs"
        click.echo(f"\n{dataset_name}: {shape}; top-{n}")
        click.echo(table(rows, markdown=markdown))
    if json_out is not None:
        with open(json_out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
        click.echo(f"\nwrote {json_out}", err=True)


if __name__ == "__main__":
    main()
