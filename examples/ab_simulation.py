"""Simulated A/B experiment end to end: does the report find a lift we planted?

By default it starts its own API (``recsys serve`` under gunicorn, on a free port of
127.0.0.1) against a fresh key prefix, publishes a small synthetic shop with the real
pipeline (``popular`` and ``itemknn`` user lists), creates an experiment through the admin
API, and replays synthetic users: each asks for recommendations, logs an impression per
item shown, clicks each with probability ``base_ctr`` (x ``lift`` in the treatment arm,
read from the response's ``variant``), and sometimes buys what it clicked. Finally it asks
the admin API for the report and checks it: the CTR difference must have p < alpha and a
95% interval that excludes 0 and contains the true difference. The keys it wrote are
deleted at the end (``--keep`` leaves them).

``--url`` targets an API that is already running (it must have lists published and
``RECSYS_ADMIN_TOKEN`` set; pass the same token with ``--admin-token``).

``--aa-runs N`` adds N A/A experiments simulated in-process on the statistics functions
(no HTTP) and prints the share with p < alpha, which should be about alpha.

Examples::

    python examples/ab_simulation.py                          # lift 1.2, 2000 users
    python examples/ab_simulation.py --lift 1.0               # an A/A run through the API
    python examples/ab_simulation.py --aa-runs 1000 --json
    python examples/ab_simulation.py --url http://127.0.0.1:8000 --admin-token "$RECSYS_ADMIN_TOKEN"

Exit status: 0 when the verdict matches the truth (lift found when there is one, none
found in an A/A run), 1 otherwise, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import numpy as np

from recsys.abtest import stats
from recsys.abtest.events import MAX_BATCH_EVENTS
from recsys.abtest.report import format_report

ALPHA = 0.05


class Transport(Protocol):
    """How the simulation talks to the API: plain HTTP, or a Flask test client in tests."""

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]: ...


class HttpTransport:
    """One keep-alive HTTP connection to ``base_url``."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url must be http(s)://host[:port], got {base_url!r}")
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.connection = connection_class(parts.hostname, parts.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        all_headers = {"Accept": "application/json", **(headers or {})}
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=payload, headers=all_headers)
        response = self.connection.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data) if data else None
        except json.JSONDecodeError:
            return response.status, {"raw": data[:200].decode(errors="replace")}

    def close(self) -> None:
        self.connection.close()


@dataclass
class Truth:
    """The planted effect: click probability per impression and purchase behaviour."""

    base_ctr: float = 0.10
    lift: float = 1.2
    purchase_rate: float = 0.15  # per click
    mean_order_value: float = 30.0
    treatment: str = "treatment"

    def ctr(self, variant: str | None) -> float:
        return self.base_ctr * (self.lift if variant == self.treatment else 1.0)

    @property
    def ctr_difference(self) -> float:
        return self.base_ctr * (self.lift - 1.0)


@dataclass
class Replay:
    """What the simulated users saw and did (client side)."""

    requests: int = 0
    events: int = 0
    seconds: float = 0.0
    by_variant: dict[str, dict[str, int]] = field(default_factory=dict)
    unrouted: int = 0


class ApiError(RuntimeError):
    pass


def _check(status: int, document: Any, what: str, expected: tuple[int, ...] = (200,)) -> Any:
    if status not in expected:
        message = document.get("error", {}).get("message") if isinstance(document, dict) else document
        raise ApiError(f"{what}: HTTP {status}: {message}")
    return document


def replay_users(
    transport: Transport,
    users: list[str],
    truth: Truth,
    rng: np.random.Generator,
    *,
    requests_per_user: int = 2,
    n: int = 10,
    ingest_token: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Replay:
    """Every user asks ``requests_per_user`` times for ``n`` recommendations and reacts.

    Events go out in batches of at most MAX_BATCH_EVENTS, each stamped with the
    recommendation id of the list it answers.
    """
    result = Replay()
    headers = {"Authorization": f"Bearer {ingest_token}"} if ingest_token else {}
    pending: list[dict[str, Any]] = []
    started = time.perf_counter()

    def flush(force: bool = False) -> None:
        while pending and (force or len(pending) >= MAX_BATCH_EVENTS):
            batch = pending[:MAX_BATCH_EVENTS]
            del pending[:MAX_BATCH_EVENTS]
            status, document = transport.request("POST", "/v1/events", batch, headers)
            _check(status, document, "POST /v1/events", (202,))
            result.events += document["accepted"]

    for done, user in enumerate(users, 1):
        for _ in range(requests_per_user):
            status, answer = transport.request("GET", f"/v1/users/{quote(user, safe='')}/recommendations?n={n}")
            _check(status, answer, f"GET recommendations of {user}")
            result.requests += 1
            variant = answer.get("variant")
            if variant is None:
                result.unrouted += 1
            counts = result.by_variant.setdefault(variant or "-", {"impressions": 0, "clicks": 0, "purchases": 0})
            rec_id = answer.get("recommendation_id")
            items = [entry["item_id"] for entry in answer.get("items", [])]
            clicks = rng.random(len(items)) < truth.ctr(variant)
            for item, clicked in zip(items, clicks):
                pending.append({"type": "impression", "user_id": user, "item_id": item, "recommendation_id": rec_id})
                counts["impressions"] += 1
                if clicked:
                    pending.append({"type": "click", "user_id": user, "item_id": item, "recommendation_id": rec_id})
                    counts["clicks"] += 1
                    if rng.random() < truth.purchase_rate:
                        value = round(float(rng.lognormal(np.log(truth.mean_order_value), 0.6)), 2)
                        pending.append({"type": "purchase", "user_id": user, "item_id": item, "value": value,
                                        "recommendation_id": rec_id})
                        counts["purchases"] += 1
            flush()
        if progress is not None:
            progress(done)
    flush(force=True)
    result.seconds = time.perf_counter() - started
    return result


def verdict(report: dict[str, Any], truth: Truth, alpha: float = ALPHA) -> dict[str, Any]:
    """Did the report find the planted CTR lift (or, in an A/A run, correctly find none)?"""
    treated = next(v for v in report["variants"] if v["name"] == truth.treatment)
    ctr = treated["vs_control"]["ctr"]
    low, high = ctr["ci"]
    p = ctr["p_value"]
    significant = p is not None and p < alpha
    contains_truth = low is not None and high is not None and low <= truth.ctr_difference <= high
    excludes_zero = low is not None and high is not None and (low > 0 or high < 0)
    if truth.lift != 1.0:
        ok = significant and excludes_zero and contains_truth
    else:
        ok = not significant and contains_truth
    return {
        "true_ctr_difference": truth.ctr_difference,
        "estimated_ctr_difference": ctr["diff"],
        "ci": [low, high],
        "p_value": p,
        "significant": significant,
        "ci_excludes_zero": excludes_zero,
        "ci_contains_truth": contains_truth,
        "srm": report["srm"]["mismatch"],
        "ok": bool(ok and not report["srm"]["mismatch"]),
    }


def aa_false_positive_rate(runs: int, seed: int, units_per_arm: int = 2000, impressions_per_unit: int = 8,
                           base_ctr: float = 0.10, alpha: float = ALPHA) -> dict[str, Any]:
    """``runs`` A/A experiments at once on the statistics functions: share of p < alpha."""
    rng = np.random.default_rng(seed)
    units = rng.binomial(2 * units_per_arm, 0.5, size=(runs, 2))
    impressions = units * impressions_per_unit
    clicks = rng.binomial(impressions, base_ctr)
    _, ctr_p = stats.two_proportion_ztest(clicks[:, 1], impressions[:, 1], clicks[:, 0], impressions[:, 0])
    converters = rng.binomial(units, 0.05)
    _, conversion_p = stats.two_proportion_ztest(converters[:, 1], units[:, 1], converters[:, 0], units[:, 0])
    revenue = np.where(rng.random((runs, 2, units_per_arm)) < 0.05, rng.lognormal(3.4, 0.6, (runs, 2, units_per_arm)), 0.0)
    mean, var = revenue.mean(axis=2), revenue.var(axis=2, ddof=1)
    revenue_p = stats.welch_ttest(mean[:, 1], var[:, 1], units_per_arm, mean[:, 0], var[:, 0], units_per_arm)[2]
    from scipy.stats import binom

    low, high = binom.interval(0.999, runs, alpha)
    shares = {name: float((p < alpha).mean()) for name, p in (("ctr", ctr_p), ("conversion", conversion_p), ("revenue_per_user", revenue_p))}
    return {
        "runs": runs,
        "alpha": alpha,
        "share_significant": shares,
        "band_999": [low / runs, high / runs],
        "ok": all(low / runs <= s <= high / runs for s in shares.values()),
    }


# ----------------------------------------------------------------- own server
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def publish_shop(redis_url: str, prefix: str, users: int, seed: int, workdir: str) -> list[str]:
    """A synthetic shop trained and published by the real pipeline; its user ids."""
    from recsys.data.generate import generate_shop
    from recsys.pipeline.config import parse_config
    from recsys.pipeline.run import run_pipeline
    from recsys.pipeline.train import LoadedInput

    interactions, catalog = generate_shop(users, max(50, users // 5), users * 15, seed)
    config = parse_config(
        {
            "models": {"popular": {}, "itemknn": {"k": 50}},
            "lists": {"user_n": 30, "together": False, "similar_models": []},
        }
    )
    run_pipeline(config, out=workdir, redis_url=redis_url, prefix=prefix, data=LoadedInput(interactions, catalog), show_progress=False)
    return sorted(interactions["user_id"].astype(str).unique().tolist())


@contextmanager
def own_server(redis_url: str, prefix: str, admin_token: str, workers: int = 2) -> Iterator[str]:
    """``recsys serve`` on a free port of 127.0.0.1; its base URL until the block ends."""
    port = free_port()
    # A server of its own on loopback: events from anyone (the simulated clients send no token).
    env = {**os.environ, "RECSYS_ADMIN_TOKEN": admin_token, "RECSYS_ROUTER_REFRESH_SECONDS": "0.5", "RECSYS_INGEST_OPEN": "1"}
    env.pop("RECSYS_INGEST_TOKEN", None)
    command = [sys.executable, "-m", "recsys.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--redis", redis_url, "--prefix", prefix]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"recsys serve exited with {process.returncode}: {log.read()[-2000:].decode(errors='replace')}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("recsys serve did not listen within 30 s") from None
                    time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def delete_prefix(redis_url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.unlink(*keys[start : start + 1000])
    return len(keys)


# ----------------------------------------------------------------------- main
def run_experiment(
    transport: Transport,
    users: list[str],
    truth: Truth,
    *,
    admin_token: str,
    seed: int,
    requests_per_user: int,
    n: int,
    control_model: str,
    treatment_model: str,
    ingest_token: str | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Create the experiment, replay the users, fetch the report; everything over ``transport``."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    name = f"sim-{seed}-{secrets.token_hex(3)}"
    definition = {
        "name": name,
        "salt": f"sim-salt-{seed}",
        "description": f"simulated: CTR x{truth.lift:g} in {truth.treatment}",
        "variants": {"control": {"model": control_model}, truth.treatment: {"model": treatment_model}},
    }
    _check(*transport.request("POST", "/v1/admin/experiments", definition, admin), "create experiment", (201,))
    time.sleep(0.6)  # let every worker's router reload the definitions
    rng = np.random.default_rng(seed)
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(users), desc="users", unit=" users", file=sys.stderr, disable=not sys.stderr.isatty())
    try:
        replay = replay_users(
            transport, users, truth, rng, requests_per_user=requests_per_user, n=n, ingest_token=ingest_token,
            progress=(lambda done: bar.update(done - bar.n)) if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    report = _check(*transport.request("GET", f"/v1/admin/experiments/{name}/report", None, admin), "report")
    _check(*transport.request("POST", f"/v1/admin/experiments/{name}/stop", None, admin), "stop experiment")
    return {"experiment": name, "report": report, "replay": replay, "verdict": verdict(report, truth)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="API to target (default: start recsys serve on a free port)")
    parser.add_argument("--admin-token", default=os.environ.get("RECSYS_ADMIN_TOKEN"), help="admin token of --url")
    parser.add_argument("--ingest-token", default=os.environ.get("RECSYS_INGEST_TOKEN"), help="ingest token of --url, if it has one")
    parser.add_argument("--redis-url", default=os.environ.get("RECSYS_REDIS_URL"), help="Redis of the own server (default RECSYS_REDIS_URL, else embedded)")
    parser.add_argument("--prefix", help="key prefix of the own server (default: a fresh recsys-sim:<hex>:)")
    parser.add_argument("--keep", action="store_true", help="keep the own server's keys")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--requests-per-user", type=int, default=2)
    parser.add_argument("--n", type=int, default=10, help="list length asked for")
    parser.add_argument("--base-ctr", type=float, default=0.10)
    parser.add_argument("--lift", type=float, default=1.2, help="treatment CTR / control CTR (1.0 = A/A)")
    parser.add_argument("--control-model", default="itemknn")
    parser.add_argument("--treatment-model", default="popular")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--aa-runs", type=int, default=0, help="also simulate this many A/A runs in-process")
    parser.add_argument("--skip-http", action="store_true", help="only the in-process A/A runs")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    args = parser.parse_args(argv)

    output: dict[str, Any] = {}
    ok = True
    truth = Truth(base_ctr=args.base_ctr, lift=args.lift)
    try:
        if not args.skip_http:
            result, users_count = _http_run(args, truth)
            replay: Replay = result["replay"]
            output["http"] = {
                "experiment": result["experiment"],
                "users": users_count,
                "requests": replay.requests,
                "events": replay.events,
                "seconds": round(replay.seconds, 2),
                "requests_per_second": round(replay.requests / replay.seconds, 1) if replay.seconds else None,
                "client_counts": replay.by_variant,
                "verdict": result["verdict"],
                "report": result["report"],
            }
            ok &= result["verdict"]["ok"]
        if args.aa_runs:
            output["aa"] = aa_false_positive_rate(args.aa_runs, args.seed)
            ok &= output["aa"]["ok"]
    except (ApiError, RuntimeError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps(output, indent=2))
    else:
        if "http" in output:
            h = output["http"]
            print(format_report(h["report"]))
            print()
            print(f"replayed {h['users']} users: {h['requests']} requests, {h['events']} events in {h['seconds']} s "
                  f"({h['requests_per_second']} requests/s incl. event posts)")
            v = h["verdict"]
            low, high = v["ci"]
            print(f"true CTR difference {100 * v['true_ctr_difference']:+.2f} pp; estimated {100 * v['estimated_ctr_difference']:+.2f} pp "
                  f"[{100 * low:+.2f}, {100 * high:+.2f}], p={v['p_value']:.3g} -> {'OK' if v['ok'] else 'WRONG'}")
        if "aa" in output:
            a = output["aa"]
            shares = ", ".join(f"{k} {100 * s:.1f}%" for k, s in a["share_significant"].items())
            print(f"A/A: {a['runs']} in-process runs, share with p < {a['alpha']}: {shares} "
                  f"(99.9% band {100 * a['band_999'][0]:.1f}..{100 * a['band_999'][1]:.1f}%) -> {'OK' if a['ok'] else 'WRONG'}")
    return 0 if ok else 1


def _http_run(args: argparse.Namespace, truth: Truth) -> tuple[dict[str, Any], int]:
    common = {
        "seed": args.seed, "requests_per_user": args.requests_per_user, "n": args.n,
        "control_model": args.control_model, "treatment_model": args.treatment_model, "show_progress": not args.json,
    }
    if args.url:
        if not args.admin_token:
            raise ValueError("--url needs --admin-token (or RECSYS_ADMIN_TOKEN) to create the experiment")
        users = [f"sim-user-{k}" for k in range(args.users)]
        transport = HttpTransport(args.url)
        try:
            return run_experiment(transport, users, truth, admin_token=args.admin_token, ingest_token=args.ingest_token, **common), len(users)
        finally:
            transport.close()

    from recsys.store.connection import resolve_url

    redis_url = resolve_url(args.redis_url)
    prefix = args.prefix or f"recsys-sim:{secrets.token_hex(4)}:"
    token = secrets.token_urlsafe(16)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            users = publish_shop(redis_url, prefix, args.users, args.seed, workdir)
        with own_server(redis_url, prefix, token) as base:
            transport = HttpTransport(base)
            try:
                return run_experiment(transport, users, truth, admin_token=token, **common), len(users)
            finally:
                transport.close()
    finally:
        if not args.keep:
            delete_prefix(redis_url, prefix)


if __name__ == "__main__":
    sys.exit(main())
