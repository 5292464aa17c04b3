"""Server time of each console page on a shop of 50k users x 20k items.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_console.py [--users 50000 --items 20000 \
        --interactions 1000000] [--requests 50] [--json out.json]

Generates the shop, trains and publishes it with the real batch job (popular, itemknn,
als, rules) under a key prefix of its own on RECSYS_REDIS_URL (default the local Redis,
database 14), then requests every page in-process through Flask's test client (the time
is the server's: routing, Redis round trips, rendering) and reports the median and the
95th percentile per page. Deletes its keys afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import redis

from recsys.data.generate import generate_shop
from recsys.pipeline.config import parse_config
from recsys.pipeline.run import run_pipeline
from serving import create_app

ADMIN = "bench-console-token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--redis", default=os.environ.get("RECSYS_REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    prefix = f"recsys-bench-console:{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(args.redis)
    with tempfile.TemporaryDirectory() as folder:
        events, catalog = generate_shop(args.users, args.items, args.interactions, seed=1)
        events.to_parquet(Path(folder) / "interactions.parquet", index=False)
        catalog.to_parquet(Path(folder) / "catalog.parquet", index=False)
        config = parse_config({
            "data": {"path": folder},
            "training": {"out": str(Path(folder) / "runs")},
            "models": {"popular": {}, "itemknn": {}, "als": {}, "rules": {}},
            "publish": {"default_model": "als"},
        })
        started = time.perf_counter()
        result = run_pipeline(config, redis_url=args.redis, prefix=prefix)
        publish_seconds = time.perf_counter() - started
        try:
            app = create_app({"REDIS_URL": args.redis, "KEY_PREFIX": prefix, "ADMIN_TOKEN": ADMIN})
            web = app.test_client()
            headers = {"Authorization": f"Bearer {ADMIN}"}
            users = events["user_id"].drop_duplicates().sample(args.requests, random_state=0, replace=True).tolist()
            items = catalog["item_id"].sample(args.requests, random_state=0, replace=True).tolist()
            pages = {
                "overview": ["/console"] * args.requests,
                "user": [f"/console/users?user_id={u}" for u in users],
                "item": [f"/console/items?item_id={i}" for i in items],
                "experiments": ["/console/experiments"] * args.requests,
            }
            figures = {}
            for name, urls in pages.items():
                web.get(urls[0], headers=headers)  # warm: script loaded, metadata cached
                times = []
                for url in urls:
                    begin = time.perf_counter()
                    response = web.get(url, headers=headers)
                    times.append(1000 * (time.perf_counter() - begin))
                    assert response.status_code == 200, (url, response.status_code)
                times.sort()
                figures[name] = {"median_ms": round(statistics.median(times), 2),
                                 "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2)}
        finally:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            for start in range(0, len(keys), 1000):
                client.unlink(*keys[start : start + 1000])
    report = {
        "shop": {"users": args.users, "items": args.items, "interactions": args.interactions},
        "pipeline_seconds": round(publish_seconds, 1),
        "version": result.publish.version,
        "pages": figures,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg()},
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
