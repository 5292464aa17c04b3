"""Spark backend figures: ALS's regParam chosen on a validation split, and both backends
side by side on the same data.

``compare``: runs each command given after ``--`` (separated by ``;;``) and reports its wall
time and the peak resident memory of its whole process tree (driver JVM, executors and
Python workers summed, sampled every 0.2 s), with the largest single process beside:

    python benchmarks/bench_spark.py compare -- recsys evaluate ... ;; recsys evaluate ... --backend spark

``als-validation``: ML-100K split as the README's protocol (stratified 75/25, seed 42); the
train part is split again the same way (seed 0) into train'/validation; every
(regParam, alpha) pair of the grid is fitted on train' on Spark and scored on validation
(nDCG@10). The test part is not touched.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_spark.py als-validation --master 'local[2]'
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from recsys.data.loaders import load
from recsys.evaluation.runner import EvaluationSettings, id_maps, prepare_split, score_model
from recsys.evaluation.splits import SplitSpec, split_data
from recsys.models.als import ALSConfig
from recsys.pipeline.config import SparkConfig
from recsys.spark.evaluate import SparkRecommender
from recsys.spark.session import spark_session

ML100K = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "ml-100k"


def als_validation(master: str, reg_params: list[float], alphas: list[float]) -> list[dict[str, float]]:
    data = load(ML100K, format="movielens-100k")
    outer = split_data(data.interactions, SplitSpec(method="stratified", test_size=0.25, seed=42))[0]
    inner = split_data(outer.train, SplitSpec(method="stratified", test_size=0.25, seed=0))[0]
    users, items = id_maps(outer.train, data.catalog)
    settings = EvaluationSettings(k=10)
    prepared = prepare_split(inner, users, items, settings, data.catalog)
    rows = []
    base = SparkConfig(master=master, conf={"spark.ui.enabled": False, "spark.sql.shuffle.partitions": 8})
    with spark_session(base) as spark:
        for reg, alpha in itertools.product(reg_params, alphas):
            config = base.model_copy(update={"als_reg_param": reg})
            model = SparkRecommender("als", ALSConfig(alpha=alpha), spark, config)
            started = time.perf_counter()
            scores = score_model(model, prepared, settings)
            rows.append({"reg_param": reg, "alpha": alpha, "ndcg@10": scores["ndcg@10"], "seconds": time.perf_counter() - started})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def measure(command: list[str]) -> dict[str, object]:
    """Wall time and peak RSS (tree sum, largest process) of one command."""
    import subprocess

    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    root = psutil.Process(process.pid)
    peak_sum = peak_one = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            sizes = []
            for member in tree:
                try:
                    sizes.append(member.memory_info().rss)
                except psutil.Error:
                    pass
            peak_sum, peak_one = max(peak_sum, sum(sizes)), max(peak_one, max(sizes, default=0))
        except psutil.Error:
            pass
        time.sleep(0.2)
    output = process.stdout.read() if process.stdout else ""
    return {
        "command": " ".join(command),
        "exit": process.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_tree_mb": round(peak_sum / 2**20),
        "peak_process_mb": round(peak_one / 2**20),
        "output": output[-2000:],
    }


def main() -> None:
    import sys

    argv = sys.argv[1:]
    if argv and argv[0] == "compare":
        rest = argv[argv.index("--") + 1 :] if "--" in argv else []
        commands, current = [], []
        for word in rest:
            if word == ";;":
                commands.append(current)
                current = []
            else:
                current.append(word)
        if current:
            commands.append(current)
        for command in commands:
            print(json.dumps(measure(command)), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["als-validation"])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--reg", default="0.01,0.03,0.1,0.3")
    parser.add_argument("--alpha", default="1,2,5")
    args = parser.parse_args()
    rows = als_validation(args.master, [float(v) for v in args.reg.split(",")], [float(v) for v in args.alpha.split(",")])
    best = max(rows, key=lambda row: row["ndcg@10"])
    print("best:", json.dumps(best))


if __name__ == "__main__":
    main()
