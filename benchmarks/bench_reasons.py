"""Benchmark of explanations (issue #19): what because items cost in training time and in
published bytes per user-list entry.

Each scenario trains the same data twice, with ``lists.reasons = false`` and ``true``, and
publishes both runs (keys under a throw-away prefix, deleted afterwards). Reported:

* training: wall and CPU seconds of ``train`` for both runs; the seconds the run spent
  finding because items (``because_seconds`` of each list in metadata.json, measured
  inside the run, so not blurred by the difference of two runs on a busy machine), and
  each model's user-list step with and without them;
* bytes per user-list entry of each model: the blobs of the run without reasons; the
  blobs with reasons (their ``"b"`` field) and, for all explaining models together, plus
  the version's ``because-items`` hash (fields and values) spread over their entries;
  ``MEMORY USAGE`` of the user-list hashes in both versions;
* the list script's cost per model: a top-10 read (``Reader.user``) of random known users'
  lists, on the version without reasons and on the one with them, in alternating blocks
  so that both see the same load: Redis' own microseconds per call (``INFO
  commandstats``, ``cmdstat_evalsha``; the default private redis-server serves this run
  alone, so they are the script's) and the client's median round trip; with
  ``--baseline-script FILE`` (a previous ``recommend.lua``, e.g. from ``git show``) also
  that script on the version without reasons.

Scenarios: ``ml100k`` (MovieLens 100K, ``--datasets``), ``1m`` (the synthetic shop of
benchmarks/bench_pipeline.py: 50,000 users x 5,000 items, 1M events).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_reasons.py --scenarios ml100k,1m --json reasons.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import redis  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import start_private_redis  # noqa: E402
from bench_pipeline import SYNTHETIC, delete_prefix, machine  # noqa: E402

from recsys.pipeline.config import parse_config  # noqa: E402
from recsys.pipeline.train import train  # noqa: E402
from recsys.publish.publisher import Publisher  # noqa: E402
from recsys.store.keys import KeyLayout  # noqa: E402
from serving.reader import Reader  # noqa: E402

#: Models per scenario: every model that explains, and others for comparison. userknn
#: (no because items) is left out at 1M, where its fit alone takes minutes.
MODELS = {
    "ml100k": ["popular", "itemknn", "userknn", "als", "ease", "content", "rules", "ranker"],
    "1m": ["popular", "itemknn", "als", "ease", "content", "rules"],
}
#: The ranker's parameters (its default candidates: ease, itemknn, als, popular).
PARAMS: dict[str, dict[str, Any]] = {"als": {"random_state": 0}}


def hash_bytes(client: redis.Redis, key: str) -> tuple[int, int]:
    """(bytes of fields + values, fields) of a hash."""
    total = fields = 0
    for field, value in client.hscan_iter(key, count=1000):
        total += len(field) + len(value)
        fields += 1
    return total, fields


def list_bytes(client: redis.Redis, key: str) -> dict[str, int]:
    """Blob bytes, the bytes of their ``"b"`` fields (``,"b":"..."``) and entries of a user-list hash."""
    total = because = entries = 0
    for _, blob in client.hscan_iter(key, count=1000):
        document = orjson.loads(blob)
        total += len(blob)
        entries += len(document["i"])
        if "b" in document:
            because += len(document["b"]) + len(',"b":""')
    return {"bytes": total, "because_bytes": because, "entries": entries}


def reader_for(client: redis.Redis, layout: KeyLayout, script: Path | None = None) -> Reader:
    """A reader of ``layout``, running ``script`` instead of serving/recommend.lua when given."""
    reader = Reader(client, layout)
    if script is not None:
        reader.source = script.read_text(encoding="utf-8")
        reader.script = client.register_script(reader.source)
        reader.sha = reader.script.sha
    return reader


def evalsha_stats(client: redis.Redis) -> tuple[int, int]:
    """(calls, microseconds) of EVALSHA since the server started."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


ROUNDS = 10


def script_latency(
    client: redis.Redis, readers: dict[str, Reader], model: str, users: list[str], calls: int
) -> dict[str, dict[str, float]]:
    """Per reader: Redis microseconds per script call and the client's median round trip of
    a top-10 read of ``model``'s list for random known users, readers in alternating blocks."""
    rng = np.random.default_rng(0)
    for reader in readers.values():
        for user in users[:50]:  # warm up: script loaded, metadata cached
            reader.user(user, 10, lambda _m: model)
    times: dict[str, list[float]] = {name: [] for name in readers}
    redis_us = {name: [0, 0] for name in readers}
    picks = rng.integers(0, len(users), calls)
    for block in np.array_split(picks, ROUNDS):
        for name, reader in readers.items():
            before = evalsha_stats(client)
            for k in block:
                started = time.perf_counter()
                reader.user(users[k], 10, lambda _m: model)
                times[name].append(time.perf_counter() - started)
            after = evalsha_stats(client)
            redis_us[name][0] += after[0] - before[0]
            redis_us[name][1] += after[1] - before[1]
    return {
        name: {
            "redis_us": round(redis_us[name][1] / max(1, redis_us[name][0]), 2),
            "round_trip_p50_us": round(float(np.median(t)) * 1e6, 1),
        }
        for name, t in times.items()
    }


def run_once(config_doc: dict[str, Any], reasons: bool, client: redis.Redis, prefix: str, work: Path) -> dict[str, Any]:
    """Train and publish under ``prefix`` (left published: the caller deletes it)."""
    config_doc = {**config_doc, "lists": {**config_doc["lists"], "reasons": reasons}}
    config = parse_config(config_doc, source="bench_reasons")
    started, cpu_started = time.perf_counter(), time.process_time()
    run_dir = train(config, work / ("runs-on" if reasons else "runs-off"), show_progress=False)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    metadata = json.loads((run_dir / "metadata.json").read_text())
    layout = KeyLayout(prefix)
    result = Publisher(client, layout, show_progress=False).publish_run(run_dir)
    version = result.version
    lists = {}
    for entry in metadata["lists"]:
        if entry["kind"] != "user":
            continue
        key = layout.user_recs(version, entry["model"])
        lists[entry["model"]] = {
            **list_bytes(client, key),
            "redis_memory": int(client.memory_usage(key, samples=0) or 0),
            "step_seconds": metadata["timings"][f"lists.user.{entry['model']}"],
            "step_cpu_seconds": metadata["cpu_seconds"][f"lists.user.{entry['model']}"],
            "because_seconds": entry.get("because_seconds"),
            "because_cpu_seconds": entry.get("because_cpu_seconds"),
            "reason": entry.get("reason"),
        }
    codes_bytes, codes = hash_bytes(client, layout.because_items(version))
    shutil.rmtree(run_dir.parent, ignore_errors=True)
    return {
        "train_seconds": round(seconds, 2),
        "train_cpu_seconds": round(cpu, 2),
        "because_seconds": round(sum(v["because_seconds"] or 0 for v in lists.values()), 2),
        "because_cpu_seconds": round(sum(v["because_cpu_seconds"] or 0 for v in lists.values()), 2),
        "lists": lists,
        "because_items_hash": {"bytes": codes_bytes, "fields": codes},
        "counts": metadata["counts"],
    }


def scenario(
    name: str, data: Path, data_format: str, client: redis.Redis, prefix: str, work: Path, calls: int,
    baseline: Path | None = None,
) -> dict[str, Any]:
    models = MODELS[name]
    config_doc = {
        "data": {"path": str(data), "format": data_format},
        "models": {m: PARAMS.get(m, {}) for m in models},
        "lists": {"user_n": 20, "similar_n": 20, "together_n": 10, "popular_n": 50},
        "selection": {"enabled": False},
        "publish": {"keep_versions": 1},
    }
    off = run_once(config_doc, False, client, prefix + "off:", work)
    on = run_once(config_doc, True, client, prefix + "on:", work)
    latency: dict[str, dict[str, dict[str, float]]] = {}
    if calls:
        readers = {"off": reader_for(client, KeyLayout(prefix + "off:")), "on": reader_for(client, KeyLayout(prefix + "on:"))}
        if baseline is not None:
            readers["baseline_off"] = reader_for(client, KeyLayout(prefix + "off:"), baseline)
        for model in on["lists"]:
            users = [k.decode() for k in client.hkeys(readers["on"].layout.user_recs(readers["on"].current().version, model))]
            latency[model] = script_latency(client, readers, model, users, calls)
    delete_prefix(client, prefix)
    per_model = {}
    explained = {"off": 0, "on": 0, "entries": 0}
    for model, after in on["lists"].items():
        before = off["lists"][model]
        per_model[model] = {
            "reason": after["reason"],
            "bytes_per_entry_off": round(before["bytes"] / before["entries"], 3),
            "bytes_per_entry_on": round(after["bytes"] / after["entries"], 3),
            "bytes_per_entry_on_without_b": round((after["bytes"] - after["because_bytes"]) / after["entries"], 3),
            "growth": round(after["bytes"] / before["bytes"] * before["entries"] / after["entries"], 4),
            "redis_memory_mb_off_on": [round(before["redis_memory"] / 2**20, 2), round(after["redis_memory"] / 2**20, 2)],
            "lists_seconds_off_on": [before["step_seconds"], after["step_seconds"]],
            "lists_cpu_seconds_off_on": [before["step_cpu_seconds"], after["step_cpu_seconds"]],
            "because_seconds": after["because_seconds"],
            "because_cpu_seconds": after["because_cpu_seconds"],
            "script_us": latency.get(model),
        }
        if after["because_bytes"]:
            explained["off"] += before["bytes"]
            explained["on"] += after["bytes"]
            explained["entries"] += after["entries"]
    hash_share = on["because_items_hash"]["bytes"]
    overall = None
    if explained["entries"]:
        overall = {
            "entries": explained["entries"],
            "bytes_per_entry_off": round(explained["off"] / explained["entries"], 3),
            "bytes_per_entry_on": round(explained["on"] / explained["entries"], 3),
            "bytes_per_entry_on_with_hash": round((explained["on"] + hash_share) / explained["entries"], 3),
            "growth_with_hash": round((explained["on"] + hash_share) / explained["off"], 4),
        }
    return {
        "scenario": name,
        "counts": on["counts"],
        "models": models,
        "train_seconds_off_on": [off["train_seconds"], on["train_seconds"]],
        "train_cpu_seconds_off_on": [off["train_cpu_seconds"], on["train_cpu_seconds"]],
        "because_seconds": on["because_seconds"],
        "because_share_of_run": round(on["because_seconds"] / on["train_seconds"], 4),
        "because_cpu_seconds": on["because_cpu_seconds"],
        "because_cpu_share_of_run": round(on["because_cpu_seconds"] / on["train_cpu_seconds"], 4),
        "because_items_hash": on["because_items_hash"],
        "explaining_models": overall,
        "per_model": per_model,
    }


def print_result(result: dict[str, Any]) -> None:
    c = result["counts"]
    print(f"\n== {result['scenario']}: {c['interactions']:,} interactions, {c['users']:,} users x {c['items']:,} items")
    off, on = result["train_seconds_off_on"]
    cpu_off, cpu_on = result["train_cpu_seconds_off_on"]
    print(f"train: {off:.2f} s without reasons, {on:.2f} s with ({cpu_off:.2f} / {cpu_on:.2f} s CPU); "
          f"because items: {result['because_seconds']:.2f} s = {100 * result['because_share_of_run']:.1f}% of the run "
          f"({result['because_cpu_seconds']:.2f} s CPU = {100 * result['because_cpu_share_of_run']:.1f}%)")
    print(f"{'model':<9} {'reason':<14} {'B/entry off':>11} {'on':>7} {'growth':>7} {'lists s off -> on':>18} "
          f"{'because s (CPU)':>16}  script: Redis us per call (round trip p50)")
    for model, row in result["per_model"].items():
        lists_off, lists_on = row["lists_seconds_off_on"]
        because = f"{row['because_seconds']:.2f} ({row['because_cpu_seconds']:.2f})" if row["because_seconds"] is not None else "-"
        script = ", ".join(
            f"{k} {v['redis_us']:.1f} ({v['round_trip_p50_us']:.0f})" for k, v in (row["script_us"] or {}).items()
        ) or "-"
        print(f"{model:<9} {row['reason']:<14} {row['bytes_per_entry_off']:>11.2f} {row['bytes_per_entry_on']:>7.2f} "
              f"{100 * (row['growth'] - 1):>6.1f}% {lists_off:>8.2f} -> {lists_on:>6.2f} {because:>16}  {script}")
    overall = result["explaining_models"]
    if overall:
        hash_info = result["because_items_hash"]
        print(f"explaining models together: {overall['bytes_per_entry_off']:.2f} -> {overall['bytes_per_entry_on']:.2f} B/entry, "
              f"{overall['bytes_per_entry_on_with_hash']:.2f} with the because-items hash ({hash_info['fields']:,} codes, "
              f"{hash_info['bytes']:,} B): growth {100 * (overall['growth_with_hash'] - 1):.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="ml100k,1m")
    parser.add_argument(
        "--redis", default="private",
        help="Redis URL, or 'private' (default): a redis-server started for the run, whose statistics are the run's alone",
    )
    parser.add_argument("--datasets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--calls", type=int, default=2000, help="script calls per model and version for the latency (0: none)")
    parser.add_argument("--baseline-script", type=Path, default=None, help="a previous recommend.lua to time beside")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    private = None
    if args.redis == "private":
        private, args.redis = start_private_redis()
    client = redis.Redis.from_url(args.redis, socket_timeout=60)
    info = machine()
    info["redis"] = client.info("server")["redis_version"]
    info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    prefix = f"bench-reasons:{uuid.uuid4().hex[:8]}:"
    work = Path(tempfile.mkdtemp(prefix="bench-reasons-"))
    results = []
    try:
        for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
            if name == "ml100k":
                results.append(scenario(name, args.datasets / "ml-100k", "movielens-100k", client, prefix, work, args.calls, args.baseline_script))
            elif name in SYNTHETIC and name in MODELS:
                from recsys.cli.demo import write_demo_data

                sizes = SYNTHETIC[name]
                write_demo_data(work / name, sizes["users"], sizes["items"], sizes["interactions"], seed=0)
                results.append(scenario(name, work / name, "auto", client, prefix, work, args.calls, args.baseline_script))
                shutil.rmtree(work / name, ignore_errors=True)
            else:
                parser.error(f"unknown scenario {name!r} (ml100k, 1m)")
            results[-1]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
            print_result(results[-1])
            sys.stdout.flush()
            if args.json:
                args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2))
    finally:
        delete_prefix(client, prefix)
        shutil.rmtree(work, ignore_errors=True)
        client.close()
        if private is not None:
            private.terminate()
            private.wait(timeout=10)


if __name__ == "__main__":
    main()
