"""Does fitting the selection's candidates on a user sample pick the same model?

On a synthetic shop, the selection's holdout is prepared twice, once with every training
user and once with ``selection.max_fit_users`` of them (a seeded sample, the scorable users
first), and every candidate is fitted and scored on each, as ``recsys pipeline`` does
(recsys/pipeline/selection.py). Prints both tables (nDCG@10, fit seconds) and the winners.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_selection.py --shop 50000,5000,1000000 --fit-users 10000
"""

from __future__ import annotations

import argparse
import json
import time

from recsys.data.generate import generate_shop
from recsys.evaluation.runner import EvaluationSettings
from recsys.models.registry import get_model_class
from recsys.pipeline import selection
from recsys.pipeline.config import parse_config

MODELS = ["popular", "itemknn", "userknn", "als", "ease", "content", "rules"]


def table(interactions, catalog, fit_users: int | None) -> dict:
    config = parse_config(
        {"data": {"path": "unused.csv"}, "models": {m: {} for m in MODELS if m != "popular"},
         "selection": {"max_fit_users": fit_users}}
    )
    started = time.perf_counter()
    prepared, holdout, problem = selection._prepare_holdout(config, interactions, catalog)
    if prepared is None:
        raise SystemExit(f"no holdout: {problem}")
    scoring = EvaluationSettings(k=10, weighting=config.weighting)
    rows = {}
    for name in MODELS:
        params = get_model_class(name).parse_config(config.models.get(name, {})).model_dump()
        row = selection._score(name, params, prepared, scoring, "ndcg@10")
        rows[name] = {"ndcg@10": row.value, "fit_seconds": round(row.fit_seconds or 0.0, 2), "error": row.error}
    scored = {k: v["ndcg@10"] for k, v in rows.items() if v["ndcg@10"] is not None}
    ranking = sorted(scored, key=lambda k: -scored[k])
    return {"fit_users": fit_users, "holdout": holdout, "models": rows, "ranking": ranking,
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shop", default="50000,5000,1000000", help="users,items,interactions of the synthetic shop")
    parser.add_argument("--fit-users", type=int, default=10_000, help="the sample's size")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    users, items, events = (int(v) for v in args.shop.split(","))
    interactions, catalog = generate_shop(users, items, events, seed=0)
    results = [table(interactions, catalog, None), table(interactions, catalog, args.fit_users)]
    for result in results:
        print(f"\nfit users: {result['fit_users'] or 'all'} ({result['seconds']} s); holdout {result['holdout']}")
        for name, row in result["models"].items():
            value = "-" if row["ndcg@10"] is None else f"{row['ndcg@10']:.4f}"
            print(f"  {name:8s} ndcg@10 {value:>7s}  fit {row['fit_seconds']:6.2f} s  {row['error'] or ''}")
        print("  ranking: " + " > ".join(result["ranking"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
