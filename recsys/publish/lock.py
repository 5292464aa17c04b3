"""The publish lock: one writer of versions at a time.

``SET {p}publish-lock <token> NX PX ttl`` takes it; the holder renews it while writing and
releases it with a compare-and-delete script, so a publisher whose lock expired can never
release (or renew) a lock someone else holds now.

The token is ``host:pid:random``. A lock held by a process of *this* host that no longer
exists (a publish killed with SIGKILL) is taken over at once, with a compare-and-set
script and a warning in the log, instead of blocking every publish until its TTL runs
out. A holder on another host, or a live one here, is waited for.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from types import TracebackType

import redis

from recsys.errors import StoreError
from recsys.store.keys import KeyLayout

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

_TAKE_OVER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
    return 1
end
return 0
"""

_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


log = logging.getLogger(__name__)


def process_exists(pid: int) -> bool:
    """Whether a process with this id exists on this host (signal 0 probes without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def dead_local_holder(token: str, host: str | None = None) -> int | None:
    """The pid of the holder named by ``token`` when it is a process of this host that is
    gone; None when the holder lives, is elsewhere, or the token is not ``host:pid:...``."""
    holder_host, _, rest = token.partition(":")
    pid_text, _, _ = rest.partition(":")
    if holder_host != (host or socket.gethostname()) or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid() or process_exists(pid):
        return None
    return pid


class PublishLock:
    """Holds ``{p}publish-lock`` for the duration of a ``with`` block."""

    def __init__(
        self, client: redis.Redis, layout: KeyLayout, *, ttl_seconds: float = 60.0, wait_seconds: float = 10.0
    ) -> None:
        self.client = client
        self.key = layout.publish_lock
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.wait_seconds = wait_seconds
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._take_over = client.register_script(_TAKE_OVER)
        self.held = False
        self._renewed_at = 0.0

    def acquire(self) -> None:
        """Take the lock, waiting up to ``wait_seconds`` for a live holder (a dead holder of
        this host is replaced at once); ``StoreError`` naming the holder otherwise."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
                self.held = True
                self._renewed_at = time.monotonic()
                return
            if self._take_over_dead_holder():
                return
            if time.monotonic() >= deadline:
                holder = self.client.get(self.key)
                ttl = self.client.pttl(self.key)
                who = holder.decode(errors="replace") if holder else "unknown"
                raise StoreError(
                    f"another publish holds {self.key} ({who}, expires in {max(ttl, 0) / 1000:.0f}s); try again later"
                )
            time.sleep(0.1)

    def _take_over_dead_holder(self) -> bool:
        """Replace the lock of a dead process of this host (atomically: only that token)."""
        raw = self.client.get(self.key)
        if raw is None:
            return False
        holder = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        pid = dead_local_holder(holder)
        if pid is None:
            return False
        if not self._take_over(keys=[self.key], args=[holder, self.token, self.ttl_ms]):
            return False  # released or taken meanwhile: try the normal way again
        log.warning("took over %s from %s: process %d of this host no longer exists", self.key, holder, pid)
        self.held = True
        self._renewed_at = time.monotonic()
        return True

    def renew(self, force: bool = False) -> None:
        """Push the expiry back (at most every third of the TTL unless ``force``); fail if lost."""
        now = time.monotonic()
        if not force and (now - self._renewed_at) * 1000 < self.ttl_ms / 3:
            return
        if not self._extend(keys=[self.key], args=[self.token, self.ttl_ms]):
            self.held = False
            raise StoreError(f"lost the publish lock {self.key} (expired or taken over); nothing was made live")
        self._renewed_at = now

    def release(self) -> None:
        if self.held:
            self._release(keys=[self.key], args=[self.token])
            self.held = False

    def __enter__(self) -> PublishLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self.release()
        except (redis.RedisError, OSError):
            # The lock expires on its own; never hide the original error behind this one.
            if error is None:
                raise
