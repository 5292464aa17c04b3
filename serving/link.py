"""How a worker process sends the API's one command per request to Redis.

Two ways, chosen per process by :func:`open_link`:

* :class:`PooledLink` (threads, e.g. gunicorn's gthread worker): each request takes an idle
  connection of the process (LIFO), sends its command and reads the reply.
* :class:`PipelinedLink` (gevent worker): *auto-pipelining*. Commands that greenlets issue
  while a batch is on the wire are queued and sent together as the next batch, in one
  write; the replies come back in order on one connection. At low load a batch is one
  command (same latency as a plain round trip); under load a worker makes one write, one
  read and one Redis wake-up for many requests, which is where the time of a request
  went (the round trip costs a worker more CPU than the recommendation logic).

Both take a command already encoded in the Redis protocol (:func:`pack`) and return the
decoded reply; an error reply raises :class:`redis.ResponseError` (or its subclass, e.g.
``NoScriptError``) for that command alone, and the connection stays usable. A broken or
timed-out connection is dropped (never reused with a reply still to come) and every
command waiting on it gets a :class:`redis.ConnectionError` or :class:`redis.TimeoutError`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import redis

#: Idle connections a threaded process keeps; more are closed after use.
MAX_IDLE = 64


def pack(command: Sequence[str | bytes | int]) -> bytes:
    """A command in the Redis protocol (RESP array of bulk strings)."""
    return b"*%d\r\n" % len(command) + pack_arguments(command)


def pack_arguments(arguments: Sequence[str | bytes | int]) -> bytes:
    """Bulk strings of ``arguments``, without the array header (for pre-packed heads)."""
    parts = []
    for argument in arguments:
        value = argument if isinstance(argument, bytes) else str(argument).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)


def _new_connection(client: redis.Redis) -> Any:
    pool = client.connection_pool
    return pool.connection_class(**pool.connection_kwargs)


class PooledLink:
    """One command per round trip on an idle connection of this process (LIFO, thread-safe:
    ``list.pop``/``append`` are atomic)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._idle: list[Any] = []

    def execute(self, packed: bytes) -> Any:
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = _new_connection(self.client)
        try:
            connection.send_packed_command([packed], check_health=False)
            reply = connection.read_response()
        except redis.ResponseError:
            self._release(connection)  # an error reply: the connection is fine
            raise
        except BaseException:
            # Broken, or timed out with an answer still to come: never reuse it.
            connection.disconnect()
            raise
        self._release(connection)
        return reply

    def _release(self, connection: Any) -> None:
        if len(self._idle) < MAX_IDLE:
            self._idle.append(connection)
        else:
            connection.disconnect()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().disconnect()


class PipelinedLink:
    """Auto-pipelining for cooperative (gevent) workers: one connection, one batch on the
    wire at a time, commands issued meanwhile go out together in the next batch."""

    def __init__(self, client: redis.Redis) -> None:
        import gevent
        from gevent.event import AsyncResult

        from serving.metrics import REDIS_COMMANDS, REDIS_WRITES

        self.client = client
        self._spawn = gevent.spawn
        self._result_class = AsyncResult
        self._queue: list[tuple[bytes, Any]] = []
        self._connection: Any = None
        self._draining = False
        self._writes, self._commands = REDIS_WRITES, REDIS_COMMANDS

    def execute(self, packed: bytes) -> Any:
        result = self._result_class()
        self._queue.append((packed, result))
        if not self._draining:
            self._draining = True
            self._spawn(self._drain)
        return result.get()

    def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                self._send(batch)
        finally:
            self._draining = False
            if self._queue:  # queued after the loop looked: not stranded
                self._draining = True
                self._spawn(self._drain)

    def _send(self, batch: list[tuple[bytes, Any]]) -> None:
        self._writes.inc()
        self._commands.inc(len(batch))
        done = 0
        try:
            if self._connection is None:
                self._connection = _new_connection(self.client)
            connection = self._connection
            connection.send_packed_command([b"".join(packed for packed, _ in batch)], check_health=False)
            for _, result in batch:
                try:
                    reply = connection.read_response()
                except redis.ResponseError as error:
                    result.set_exception(error)
                else:
                    result.set(reply)
                done += 1
        except BaseException as error:
            if self._connection is not None:
                self._connection.disconnect()
                self._connection = None
            for _, result in batch[done:]:
                result.set_exception(_copy(error))
            if not isinstance(error, Exception):
                raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.disconnect()
            self._connection = None


def _copy(error: BaseException) -> BaseException:
    """A fresh exception per waiting request (one instance raised in many greenlets would
    collect all their tracebacks); anything unexpected becomes a ConnectionError."""
    if isinstance(error, redis.RedisError):
        try:
            return type(error)(*error.args)
        except Exception:
            pass
    return redis.ConnectionError(f"Redis connection failed: {error!r}")


def cooperative() -> bool:
    """True in a gevent worker (sockets monkey-patched): greenlets, not threads."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


def open_link(client: redis.Redis) -> PooledLink | PipelinedLink:
    """The link for this process: pipelined under gevent, pooled otherwise."""
    return PipelinedLink(client) if cooperative() else PooledLink(client)
