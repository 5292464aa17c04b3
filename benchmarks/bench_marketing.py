"""Segments and propensity on a synthetic shop and the Online Retail sample.

    python benchmarks/bench_marketing.py [--datasets ../shared/datasets] [--json out.json]

For each data set: segments (k chosen by silhouette) with their stability across seeds
(adjusted Rand index between the labelling of seed 0 and of seeds 1-4), and propensity for
the three largest categories (Online Retail has no categories: the three most frequent
product-type words of its titles, BAG, HEART and CHRISTMAS) against the recency-frequency
baseline, on the last full horizon of each log.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.generate import generate_shop
from recsys.marketing.features import purchase_lines, top_categories
from recsys.marketing.propensity import PropensityConfig, fit_propensity
from recsys.marketing.segments import SegmentsConfig, segment_customers
from recsys.pipeline.config import load_config
from recsys.pipeline.train import load_input

ONLINE_RETAIL = "online-retail-sample/online_retail_sample.csv"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "online-retail.toml"


def online_retail(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The invoice lines read as the pipeline reads them: examples/online-retail.toml's
    mapping (guests and cancellations dropped, the catalogue made from the lines)."""
    config = load_config(EXAMPLE).with_data(str(root / ONLINE_RETAIL))
    loaded = load_input(config)
    return loaded.interactions, loaded.catalog


def run(name: str, interactions: pd.DataFrame, catalog: pd.DataFrame, targets: list[str], horizon: float) -> dict[str, Any]:
    purchases = purchase_lines(interactions, catalog)
    started = time.perf_counter()
    segmentation = segment_customers(purchases, SegmentsConfig(stability_runs=5))
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "dataset": name,
        "customers": int(len(segmentation.labels)),
        "k": segmentation.k,
        "silhouette": round(segmentation.silhouette[segmentation.k], 4),
        "adjusted_rand_mean": round(segmentation.stability["adjusted_rand_mean"], 4),
        "adjusted_rand_min": round(segmentation.stability["adjusted_rand_min"], 4),
        "segments": [f"{s['name']} ({s['size']})" for s in segmentation.summary],
        "segments_seconds": round(seconds, 2),
        "propensity": [],
    }
    for target in targets:
        started = time.perf_counter()
        fitted = fit_propensity(purchases, interactions, PropensityConfig(target=target, horizon_days=horizon, k=100), catalog)
        document = fitted.to_json()
        result["propensity"].append(
            {"target": target, "horizon_days": horizon, "model": document["model"], "baseline": document["baseline"],
             "chosen_c": fitted.chosen_c, "seconds": round(time.perf_counter() - started, 2)}
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "datasets")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    events, catalog = generate_shop(5_000, 2_000, 200_000, 1)
    shop_targets = [f"category={c}" for c in top_categories(purchase_lines(events, catalog), 3)]
    results.append(run("synthetic 5k users x 2k items, 200k events (seed 1)", events, catalog, shop_targets, 14.0))
    if (args.datasets / ONLINE_RETAIL).exists():
        interactions, catalog = online_retail(args.datasets)
        targets = ["title=BAG", "title=HEART", "title=CHRISTMAS"]
        results.append(run("Online Retail sample", interactions, catalog, targets, 30.0))
    for r in results:
        print(f"\n{r['dataset']}: {r['customers']} customers, k={r['k']} (silhouette {r['silhouette']}), "
              f"adjusted Rand across seeds {r['adjusted_rand_mean']} (min {r['adjusted_rand_min']}), {r['segments_seconds']} s")
        print("  segments: " + "; ".join(r["segments"]))
        print(f"  {'target':<22} {'AUC model':>9} {'AUC base':>9} {'P@100 m':>8} {'P@100 b':>8} {'lift m':>7} {'lift b':>7} {'pos':>5}")
        for p in r["propensity"]:
            m, b = p["model"], p["baseline"]
            print(f"  {p['target']:<22} {m['auc']:>9} {b['auc']:>9} {m['precision_at_k']:>8} {b['precision_at_k']:>8} "
                  f"{m['lift_at_k']:>7} {b['lift_at_k']:>7} {m['positives']:>5}")
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
