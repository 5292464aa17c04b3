"""Default parameters against a small tuned grid, on every data set, with a temporal holdout.

For each data set the newest 20% of the rows are the holdout (test); the older 80% are
split again the same way (newest 20% of them = validation). Each model is scored:

* ``default``: default parameters, fitted on the older 80%, scored on the holdout;
* ``tuned``: every configuration of the model's small grid
  (:data:`recsys.evaluation.tuning.SMALL_GRIDS`, plus the defaults) fitted on the oldest
  64% and scored on validation; the best one is refitted on the older 80% and scored on
  the holdout. The holdout never chooses a parameter.

``popular`` is a row like any other: a default that loses to it on a data set is fragile.
Optionally (``--selection``) the training pipeline itself runs on each data set and its
auto-selected model (``[selection]``, the same temporal holdout) is reported.

Data sets: ``ml100k`` and ``ml-latest-small`` (../shared/datasets, or $RECSYS_DATASETS), the
Online Retail sample (its columns renamed to the schema, cancellations and guest lines
dropped), and three generated shops: ``shop-small`` (500 users, 200 items, 3,500 events),
``shop-mid`` (5,000 x 2,000, 100,000 events) and ``shop-longtail`` (3,000 users, 15,000
items, 30,000 events).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_defaults.py --json defaults.json
    python benchmarks/bench_defaults.py --datasets shop-small --models popular,als --selection
    python benchmarks/bench_defaults.py --selection-only     # the served model per data set
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recsys.data import schema  # noqa: E402
from recsys.errors import RecsysError  # noqa: E402
from recsys.evaluation.runner import EvaluationSettings, id_maps, prepare_split, score_model  # noqa: E402
from recsys.evaluation.splits import SplitSpec, split_data  # noqa: E402
from recsys.evaluation.tuning import SMALL_GRIDS  # noqa: E402
from recsys.models.registry import create_model  # noqa: E402

MODELS = ["popular", "itemknn", "userknn", "als", "bpr", "ease", "svd", "rules", "content", "blend"]
DATASETS = ["ml100k", "ml-latest-small", "online-retail", "shop-small", "shop-mid", "shop-longtail"]
METRIC = "ndcg@10"


def datasets_dir() -> Path:
    return Path(os.environ.get("RECSYS_DATASETS") or ROOT.parent / "shared" / "datasets")


def online_retail(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Online Retail sample in the schema's columns: invoices as orders, quantities as
    values; cancellations (invoice numbers starting with C) and lines without a customer dropped."""
    raw = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str})
    raw = raw[~raw["InvoiceNo"].str.startswith("C") & raw["CustomerID"].notna()]
    frame = pd.DataFrame(
        {
            schema.USER_ID: raw["CustomerID"].str.removesuffix(".0"),
            schema.ITEM_ID: raw["StockCode"],
            schema.TIMESTAMP: (pd.to_datetime(raw["InvoiceDate"], format="%m/%d/%Y %H:%M") - pd.Timestamp(0))
            // pd.Timedelta(seconds=1),
            schema.ORDER_ID: raw["InvoiceNo"],
            schema.VALUE: raw["Quantity"].astype(float),
        }
    ).reset_index(drop=True)
    catalog = (
        raw.drop_duplicates("StockCode")[["StockCode", "Description"]]
        .rename(columns={"StockCode": schema.ITEM_ID, "Description": schema.TITLE})
        .reset_index(drop=True)
    )
    return frame, catalog


def load_dataset(name: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    from recsys.data.generate import generate_shop
    from recsys.data.loaders import load

    folder = datasets_dir()
    if name == "ml100k":
        loaded = load(folder / "ml-100k", format="movielens-100k")
        return loaded.interactions, loaded.catalog
    if name == "ml-latest-small":
        loaded = load(folder / "ml-latest-small", format="movielens-latest")
        return loaded.interactions, loaded.catalog
    if name == "online-retail":
        return online_retail(folder / "online-retail-sample" / "online_retail_sample.csv")
    shapes = {"shop-small": (500, 200, 3_500), "shop-mid": (5_000, 2_000, 100_000), "shop-longtail": (3_000, 15_000, 30_000)}
    users, items, events = shapes[name]
    return generate_shop(users, items, events, seed=7)


def temporal(data: pd.DataFrame, fraction: float = 0.2) -> Any:
    return split_data(data, SplitSpec(method="temporal", test_size=fraction))[0]


def score(name: str, params: dict[str, Any], prepared: Any, settings: EvaluationSettings) -> dict[str, Any]:
    try:
        result = score_model(create_model(name, params), prepared, settings)
    except RecsysError as error:
        return {"error": str(error)}
    return {"value": result[METRIC], "fit_seconds": result["fit_seconds"]}


def bench(name: str, models: list[str], selection: bool, grid: bool = True) -> dict[str, Any]:
    data, catalog = load_dataset(name)
    if not grid:
        return {"dataset": name, "rows": len(data), "models": {}, "selection": run_selection(data, catalog, models)}
    settings = EvaluationSettings(k=10)
    users, items = id_maps(data, catalog)
    outer = temporal(data)
    inner = temporal(outer.train)
    test = prepare_split(outer, users, items, settings, catalog)
    validation = prepare_split(inner, users, items, settings, catalog)
    rows: dict[str, Any] = {}
    for model in models:
        started = time.perf_counter()
        default = score(model, {}, test, settings)
        if "error" in default:
            rows[model] = default
            print(f"{name} {model}: {default['error']}", file=sys.stderr)
            continue
        trials = [{}] + [dict(g) for g in SMALL_GRIDS.get(model, [])]
        scored = [(params, score(model, params, validation, settings)) for params in trials]
        valid = [(p, s) for p, s in scored if "value" in s]
        best_params, best_validation = max(valid, key=lambda pair: pair[1]["value"]) if valid else ({}, {"value": None})
        tuned = default if best_params == {} else score(model, best_params, test, settings)
        rows[model] = {
            "default": default["value"],
            "default_validation": next((s.get("value") for p, s in scored if p == {}), None),
            "tuned": tuned.get("value"),
            "tuned_params": best_params,
            "fit_seconds": default["fit_seconds"],
            "trials": [{"params": p, **s} for p, s in scored],
        }
        print(
            f"{name} {model}: default {default['value']:.4f} tuned {tuned.get('value') or 0:.4f} {best_params} "
            f"({time.perf_counter() - started:.1f}s)",
            file=sys.stderr,
        )
    out: dict[str, Any] = {
        "dataset": name,
        "rows": len(data),
        "users": len(users),
        "items": len(items),
        "holdout": {k: test.info[k] for k in ("cut", "train_rows", "test_rows", "evaluated_users")},
        "models": rows,
    }
    if selection:
        out["selection"] = run_selection(data, catalog, [m for m in models if "error" not in rows.get(m, {})])
    return out


def run_selection(data: pd.DataFrame, catalog: pd.DataFrame | None, models: list[str]) -> dict[str, Any]:
    """The pipeline's own choice: ``recsys train`` with every model and default_model = auto."""
    import tempfile

    from recsys.pipeline.config import parse_config
    from recsys.pipeline.train import LoadedInput, train

    with tempfile.TemporaryDirectory() as folder:
        config = parse_config({"models": {m: {} for m in models}, "training": {"out": folder}, "lists": {"user_n": 10}})
        run = train(config, data=LoadedInput(data, catalog), show_progress=False)
        with open(run / "metadata.json", encoding="utf-8") as handle:
            return json.load(handle)["selection"]


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        f"| data set | model | default {METRIC} | tuned {METRIC} | tuned parameters (chosen on validation) |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for result in results:
        popular = result["models"].get("popular", {}).get("default")
        for model, row in result["models"].items():
            if "error" in row:
                continue
            mark = " (< popular)" if popular is not None and model != "popular" and row["default"] < popular else ""
            params = ", ".join(f"{k}={v}" for k, v in row["tuned_params"].items()) or "defaults"
            lines.append(
                f"| {result['dataset']} | {model} | {row['default']:.4f}{mark} | {row['tuned']:.4f} | {params} |"
            )
    return "\n".join(lines)


def selection_markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        f"| data set | served (auto) | its {METRIC} | best candidate | popular | candidates ({METRIC} on the holdout) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        selection = result.get("selection")
        if not selection:
            continue
        candidates = [c for c in selection["candidates"] if c.get("value") is not None]
        chosen = next(c for c in candidates if c["chosen"])
        best = max(candidates, key=lambda c: c["value"])
        popular = next(c for c in candidates if c["model"] == "popular")
        scores = ", ".join(f"{c['model']} {c['value']:.3f}" for c in candidates)
        lines.append(
            f"| {result['dataset']} | {chosen['model']} | {chosen['value']:.4f} | {best['model']} {best['value']:.4f} "
            f"| {popular['value']:.4f} | {scores} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--selection", action="store_true", help="also run the pipeline's auto selection")
    parser.add_argument("--selection-only", action="store_true", help="only the pipeline's auto selection")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = []
    for name in args.datasets.split(","):
        results.append(bench(name, args.models.split(","), args.selection or args.selection_only, not args.selection_only))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    if not args.selection_only:
        print(markdown(results))
    if args.selection or args.selection_only:
        print()
        print(selection_markdown(results))


if __name__ == "__main__":
    main()
