"""The publish lock: a holder killed with SIGKILL on this host is taken over at once; a live
holder, or one on another host, is waited for."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from recsys.errors import StoreError
from recsys.publish.lock import PublishLock, dead_local_holder
from recsys.store.keys import KeyLayout

HOLDER = """
import sys, time, redis
from recsys.publish.lock import PublishLock
from recsys.store.keys import KeyLayout
client = redis.Redis.from_url(sys.argv[1])
lock = PublishLock(client, KeyLayout(sys.argv[2]), ttl_seconds=60)
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def start_holder(redis_url: str, prefix: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", HOLDER, redis_url, prefix], stdout=subprocess.PIPE, env=env, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_lock_of_a_killed_publish_is_taken_over_at_once(
    redis_url: str, key_prefix: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    layout = KeyLayout(key_prefix)
    holder = start_holder(redis_url, key_prefix)
    try:
        with pytest.raises(StoreError, match=rf":{holder.pid}:"):  # alive: waited for, then refused
            PublishLock(redis_client, layout, wait_seconds=0.3).acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert redis_client.pttl(layout.publish_lock) > 50_000  # the failure: ~60 s left to wait
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="recsys.publish.lock"):
        lock = PublishLock(redis_client, layout, wait_seconds=10)
        lock.acquire()
    assert time.monotonic() - started < 5  # not the TTL, not the wait
    assert lock.held and redis_client.get(layout.publish_lock).decode() == lock.token
    assert f"process {holder.pid} of this host no longer exists" in caplog.text
    lock.release()
    assert redis_client.get(layout.publish_lock) is None


def test_a_holder_on_another_host_is_waited_for(redis_client: redis.Redis, key_prefix: str) -> None:
    layout = KeyLayout(key_prefix)
    redis_client.set(layout.publish_lock, "some-other-host:1:abc", px=60_000)
    with pytest.raises(StoreError, match="some-other-host"):
        PublishLock(redis_client, layout, wait_seconds=0.2).acquire()


def test_dead_local_holder() -> None:
    import socket

    host = socket.gethostname()
    assert dead_local_holder(f"{host}:{os.getpid()}:x") is None  # this very process
    assert dead_local_holder(f"other:{2**22 + 12345}:x") is None  # another host
    assert dead_local_holder("not-a-token") is None
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert dead_local_holder(f"{host}:{child.pid}:x") == child.pid
