"""serving.link: the protocol encoding, the pooled link under threads and the pipelined link
under gevent (in a patched subprocess), against real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import redis
from redis.connection import Connection

from serving.link import MAX_IDLE, PooledLink, cooperative, open_link, pack
from tests.serving.conftest import REPO_ROOT, free_port


@pytest.mark.parametrize(
    "command",
    [("PING",), ("EVALSHA", "a" * 40, 0, "user", "p:", "", 10, "als", "u 1", "", "1"), ("SET", "k", b"\x00\xff\r\n"), ("ECHO", "é✓")],
)
def test_pack_matches_redis_py(command: tuple) -> None:
    assert pack(command) == b"".join(Connection().pack_command(*command))


def test_pooled_link_under_threads(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    link = open_link(client)
    assert isinstance(link, PooledLink) and not cooperative()
    wrong: list[tuple[str, bytes]] = []

    def work(thread: int) -> None:
        for k in range(100):
            value = f"{key_prefix}{thread}:{k}"
            reply = link.execute(pack(("ECHO", value)))
            if reply != value.encode():
                wrong.append((value, reply))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert 1 <= len(link._idle) <= 16  # connections are reused, not one per command

    with pytest.raises(redis.ResponseError, match="pooled failure"):
        link.execute(pack(("EVAL", "return redis.error_reply('pooled failure')", 0)))
    assert link.execute(pack(("ECHO", "still fine"))) == b"still fine"
    link.close()
    assert link._idle == []


def test_pooled_link_keeps_a_bounded_number_of_idle_connections(redis_url: str) -> None:
    link = PooledLink(redis.Redis.from_url(redis_url))
    barrier = threading.Barrier(MAX_IDLE + 8)

    def work() -> None:
        barrier.wait()
        link.execute(pack(("PING",)))

    threads = [threading.Thread(target=work) for _ in range(MAX_IDLE + 8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(link._idle) <= MAX_IDLE
    link.close()


def test_pooled_link_on_a_dead_port_fails_quickly() -> None:
    link = PooledLink(redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5))
    started = time.perf_counter()
    with pytest.raises(redis.ConnectionError):
        link.execute(pack(("PING",)))
    assert time.perf_counter() - started < 2.0 and link._idle == []


@pytest.mark.slow
def test_pipelined_link_under_gevent(redis_url: str, key_prefix: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.serving.gevent_link_probe", redis_url, key_prefix, str(free_port())],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["cooperative"] is True
    assert out["echo_correct"] == 300
    # the /metrics counters: simultaneous commands shared writes
    assert out["commands"] == 300 and out["batches"] < 300
    assert len(out["mixed_errors"]) == 10 and all("probe failure" in e[1] for e in out["mixed_errors"])
    assert out["mixed_ok"] == 20
    assert "error:ConnectionError" in out["killed"]
    assert out["after_kill"] == [["ok", "again"]]
    assert out["dead"] == ["ConnectionError"] and out["dead_seconds"] < 3.0
