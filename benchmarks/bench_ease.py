"""EASE fit time and peak memory by catalogue size, and the cost of the inverse by method.

Synthetic implicit data: each user draws 1.3 x ``--per-user`` items with replacement from a
long-tail (Zipf-like) popularity and keeps the distinct ones (about 60 for 50), ``--users-per-item`` x n_items users. Memory is the tracemalloc peak
of the fit (numpy and scipy buffers; LAPACK works in place in them).

    python benchmarks/bench_ease.py                     # table
    python benchmarks/bench_ease.py --json              # machine-readable
    python benchmarks/bench_ease.py --sizes 1700 --solver-sizes 1700
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

from recsys.models.ease import EASERecommender, ease_weights, gram_matrix  # noqa: E402


def synthetic_matrix(n_items: int, n_users: int, per_user: int, seed: int = 0) -> sp.csr_matrix:
    """Binary CSR (n_users, n_items): 1.3 x ``per_user`` long-tail draws per user, duplicates merged."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / (np.arange(n_items) + 10.0) ** 0.8
    popularity /= popularity.sum()
    # Draw with replacement, a little more than needed, then keep distinct pairs.
    draws = rng.choice(n_items, size=(n_users, int(per_user * 1.3)), p=popularity)
    rows = np.repeat(np.arange(n_users), draws.shape[1])
    matrix = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, draws.ravel())), shape=(n_users, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def measure(action: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, tracemalloc peak in MB) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak / 1e6


def bench_fit(n_items: int, users_per_item: int, per_user: int, l2: float) -> dict[str, Any]:
    matrix = synthetic_matrix(n_items, users_per_item * n_items, per_user)
    model, seconds, peak = measure(lambda: EASERecommender(l2=l2, max_items=max(n_items, 20_000)).fit(matrix))
    start = time.perf_counter()
    model.recommend(np.arange(min(1000, matrix.shape[0])), 10)
    per_1000 = time.perf_counter() - start
    return {
        "items": n_items,
        "users": matrix.shape[0],
        "interactions": int(matrix.nnz),
        "fit_s": round(seconds, 2),
        "peak_mb": round(peak, 1),
        "weights_mb": round(model.weights.nbytes / 1e6, 1),
        "solve_dtype": model.solve_dtype,
        "recommend_1000_users_s": round(per_1000, 3),
    }


def bench_solvers(n_items: int, users_per_item: int, per_user: int, l2: float) -> list[dict[str, Any]]:
    """Time each way of getting P = (X^T X + l2 I)^-1 on the same Gram matrix."""
    matrix = synthetic_matrix(n_items, users_per_item * n_items, per_user)
    gram64 = gram_matrix(matrix, np.float64)
    eye = np.eye(n_items)
    reference = None
    rows = []

    def regularised(dtype: type[np.floating]) -> np.ndarray:
        return (gram64 + l2 * eye).astype(dtype)

    methods: list[tuple[str, type[np.floating], Callable[[np.ndarray], np.ndarray]]] = [
        ("np.linalg.inv", np.float64, np.linalg.inv),
        ("np.linalg.inv", np.float32, np.linalg.inv),
        (
            "cho_factor+cho_solve",
            np.float32,
            lambda a: scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, check_finite=False), np.eye(len(a), dtype=a.dtype), check_finite=False),
        ),
        (
            "solve(assume_a=pos)",
            np.float32,
            lambda a: scipy.linalg.solve(a, np.eye(len(a), dtype=a.dtype), assume_a="pos", check_finite=False),
        ),
        ("potrf+potri in place (used)", np.float64, None),  # type: ignore[list-item]
        ("potrf+potri in place (used)", np.float32, None),  # type: ignore[list-item]
    ]
    for label, dtype, solve in methods:
        if solve is None:
            # ease_weights adds l2 itself and returns B; time the same work the model does.
            data = gram64.astype(dtype)
            start = time.perf_counter()
            weights = ease_weights(data, l2)
        else:
            data = regularised(dtype)
            start = time.perf_counter()
            inverse = solve(data)
            weights = inverse / -np.diag(inverse)[None, :]
            np.fill_diagonal(weights, 0.0)
        seconds = time.perf_counter() - start
        if reference is None:
            reference = weights.astype(np.float64)
        error = float(np.abs(weights - reference).max() / np.abs(reference).max())
        rows.append({"items": n_items, "method": label, "dtype": np.dtype(dtype).name, "seconds": round(seconds, 3), "max_rel_diff_B": error})
    return rows


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
    blas = [f"{i['internal_api']} {i.get('version')} x{i['num_threads']}" for i in threadpool_info() if i["user_api"] == "blas"]
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "blas": blas,
    }


def table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    cells = [[str(row[c]) if not isinstance(row[c], float) or row[c] >= 1e-3 else f"{row[c]:.1e}" for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


@click.command()
@click.option("--sizes", default="1700,10000,20000", show_default=True, help="item counts for the fit benchmark")
@click.option("--solver-sizes", default="1700,10000", show_default=True, help="item counts for the inverse comparison")
@click.option("--users-per-item", default=5, show_default=True, help="users = this x items")
@click.option("--per-user", default=50, show_default=True, help="draws per user / 1.3 (distinct items kept)")
@click.option("--l2", default=250.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON on stdout")
def main(sizes: str, solver_sizes: str, users_per_item: int, per_user: int, l2: float, as_json: bool) -> None:
    """Benchmark EASE: fit time and memory by size; inverse methods compared."""
    fits = [bench_fit(int(n), users_per_item, per_user, l2) for n in sizes.split(",") if n]
    solvers = [row for n in solver_sizes.split(",") if n for row in bench_solvers(int(n), users_per_item, per_user, l2)]
    if as_json:
        json.dump({"machine": machine(), "fit": fits, "solvers": solvers}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    info = machine()
    click.echo(f"machine: {info['cpu']}, {info['cores']} cores, BLAS {', '.join(info['blas'])}, numpy {info['numpy']}, scipy {info['scipy']}")
    click.echo("\nEASE fit")
    click.echo(table(fits))
    if solvers:
        click.echo("\n(X^T X + l2 I)^-1 and B, by method (max_rel_diff_B against float64 np.linalg.inv)")
        click.echo(table(solvers))


if __name__ == "__main__":
    main()
