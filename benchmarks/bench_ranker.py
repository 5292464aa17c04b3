"""The two-stage ranker against the single models and the blend, with paired confidence intervals.

Each data set is split as the README's protocol does (stratified 75/25 per user, seed 42,
k = 10, training items removed, every test interaction relevant). Every model is fitted on
the train part and scored on test; per-user nDCG@10 of the ranker is compared with the best
single model and with the blend by a paired t interval over users (scipy.stats.ttest_rel).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_ranker.py --datasets ml-100k,ml-latest-small,retail,shop \\
        --json ranker.json

Data sets: ``ml-100k`` and ``ml-latest-small`` from ../shared/datasets; ``retail`` is the
Online Retail sample (CustomerID = user, StockCode = item, InvoiceDate = time, blank
customers and cancelled 'C' invoices dropped, InvoiceNo = order); ``shop`` is the synthetic
shop generator's output (3,000 users, 1,000 items, 100,000 events, seed 1).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from recsys.data import schema
from recsys.data.generate import generate_shop
from recsys.evaluation import metrics
from recsys.evaluation.runner import EvaluationSettings, id_maps, load_input, prepare_split
from recsys.evaluation.splits import SplitSpec, split_data
from recsys.models.registry import create_model

DATASETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
SINGLE_MODELS = ("popular", "itemknn", "userknn", "als", "ease")


def online_retail(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Online Retail sample as (interactions, catalogue) in the schema's columns."""
    raw = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str})
    raw = raw[raw["CustomerID"].notna() & ~raw["InvoiceNo"].str.startswith("C") & (raw["Quantity"] > 0)]
    times = pd.to_datetime(raw["InvoiceDate"], format="%m/%d/%Y %H:%M")
    interactions = pd.DataFrame(
        {
            schema.USER_ID: raw["CustomerID"].str.replace(r"\.0$", "", regex=True),
            schema.ITEM_ID: raw["StockCode"],
            schema.EVENT_TYPE: "purchase",
            schema.VALUE: raw["Quantity"].astype(np.float64),
            schema.TIMESTAMP: (times.astype("int64") // 10**9).astype(np.int64),
            schema.ORDER_ID: raw["InvoiceNo"],
        }
    ).reset_index(drop=True)
    catalog = (
        raw.groupby("StockCode")
        .agg(title=("Description", "first"), price=("UnitPrice", "median"))
        .reset_index()
        .rename(columns={"StockCode": schema.ITEM_ID})
    )
    catalog[schema.TITLE] = catalog[schema.TITLE].fillna("")
    return interactions, catalog


def load(name: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    if name == "ml-100k":
        loaded = load_input(DATASETS / "ml-100k", "movielens-100k")
        return loaded.interactions, loaded.catalog
    if name == "ml-latest-small":
        loaded = load_input(DATASETS / "ml-latest-small", "movielens-latest")
        return loaded.interactions, loaded.catalog
    if name == "retail":
        return online_retail(DATASETS / "online-retail-sample" / "online_retail_sample.csv")
    if name == "shop":
        return generate_shop(3_000, 1_000, 100_000, seed=1)
    raise SystemExit(f"unknown data set {name!r} (ml-100k, ml-latest-small, retail, shop)")


def paired_interval(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """Mean per-user difference first - second with its 95% paired t interval and p-value."""
    test = stats.ttest_rel(first, second)
    interval = test.confidence_interval(0.95)
    return {
        "difference": float(np.mean(first - second)),
        "low": float(interval.low),
        "high": float(interval.high),
        "p_value": float(test.pvalue),
    }


def run(name: str, models: list[str], params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    interactions, catalog = load(name)
    users, items = id_maps(interactions, catalog)
    settings = EvaluationSettings(k=10)
    split = split_data(interactions, SplitSpec(method="stratified", test_size=0.25, seed=42))[0]
    prepared = prepare_split(split, users, items, settings, catalog)
    scored = prepared.eval_users
    per_user: dict[str, np.ndarray] = {}
    results: dict[str, Any] = {}
    for model_name in models:
        model = create_model(model_name, params.get(model_name))
        start = time.perf_counter()
        model.fit(prepared.train)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        recommended, _ = model.recommend(scored, 10)
        recommend_seconds = time.perf_counter() - start
        ranking = metrics.per_user_ranking(recommended, prepared.relevant[scored], 10)
        per_user[model_name] = ranking.ndcg
        results[model_name] = {
            "ndcg@10": float(ranking.ndcg.mean()),
            "precision@10": float(ranking.precision.mean()),
            "fit_seconds": round(fit_seconds, 2),
            "recommend_seconds": round(recommend_seconds, 2),
        }
        if model_name == "ranker":
            results[model_name]["training"] = model.training
            results[model_name]["importances"] = dict(sorted(model.importances.items(), key=lambda kv: -kv[1]))
        print(f"{name:16s} {model_name:8s} nDCG@10 {ranking.ndcg.mean():.4f}  fit {fit_seconds:6.2f}s  "
              f"scoring {recommend_seconds:5.2f}s", flush=True)
    out: dict[str, Any] = {"data": name, "users_scored": int(len(scored)), "models": results}
    singles = [m for m in models if m in SINGLE_MODELS]
    if "ranker" in per_user and singles:
        best = max(singles, key=lambda m: results[m]["ndcg@10"])
        out["best_single"] = best
        out["ranker_vs_best_single"] = paired_interval(per_user["ranker"], per_user[best])
        if "blend" in per_user:
            out["ranker_vs_blend"] = paired_interval(per_user["ranker"], per_user["blend"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,ml-latest-small,retail,shop")
    parser.add_argument("--models", default="popular,itemknn,userknn,als,ease,blend,ranker")
    parser.add_argument("--param", action="append", default=[], help="MODEL.NAME=JSON, e.g. ranker.folds=5")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    params: dict[str, dict[str, Any]] = {}
    for text in args.param:
        key, _, value = text.partition("=")
        model_name, _, parameter = key.partition(".")
        params.setdefault(model_name, {})[parameter] = json.loads(value)
    report = {"load_average": os.getloadavg(), "runs": []}
    for name in args.datasets.split(","):
        one = run(name, args.models.split(","), params)
        report["runs"].append(one)
        for key in ("ranker_vs_best_single", "ranker_vs_blend"):
            if key in one:
                c = one[key]
                print(f"{name:16s} {key}: {c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}] p={c['p_value']:.3g}")
    report["load_average_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
