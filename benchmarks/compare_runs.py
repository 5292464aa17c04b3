"""Compare the lists of two run folders (e.g. the local and the Spark backend on the same
data): for every list both have, the keys present in one only, the keys whose lists are
identical (same items, same order), and the mean overlap of the top-k item sets.

    python benchmarks/compare_runs.py RUN_A RUN_B [--k 10]
"""

from __future__ import annotations

import argparse
import json

from recsys.runs.folder import RunFolder


def read(run: RunFolder, entry: dict) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    for batch in run.list(entry).batches():
        keys = batch.column("key").to_pylist()
        items = batch.column("item_ids").to_pylist()
        lists.update(zip(keys, items, strict=True))
    return lists


def compare(a: dict[str, list[str]], b: dict[str, list[str]], k: int) -> dict[str, object]:
    common = a.keys() & b.keys()
    identical = sum(a[key] == b[key] for key in common)
    same_top = sum(a[key][:k] == b[key][:k] for key in common)
    overlap = [len(set(a[key][:k]) & set(b[key][:k])) / max(1, min(k, len(a[key]), len(b[key]))) for key in common]
    return {
        "keys_a": len(a),
        "keys_b": len(b),
        "common": len(common),
        "identical": identical,
        f"same_top{k}_order": same_top,
        f"mean_top{k}_overlap": round(sum(overlap) / max(1, len(overlap)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    run_a, run_b = RunFolder(args.a), RunFolder(args.b)
    names_b = {(e["kind"], e["model"]): e for e in run_b.list_entries()}
    for entry in run_a.list_entries():
        other = names_b.get((entry["kind"], entry["model"]))
        if other is None:
            print(json.dumps({"list": entry["path"], "only_in": "a"}))
            continue
        row = {"list": entry["path"], **compare(read(run_a, entry), read(run_b, other), args.k)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
