"""Drives :class:`serving.link.PipelinedLink` in a gevent-patched process, as a gevent worker
would, and prints what happened as JSON (run by test_link.py in a subprocess, so the test
process itself is never monkey-patched).

    python -m tests.serving.gevent_link_probe REDIS_URL KEY_PREFIX
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402

from serving.link import PipelinedLink, cooperative, open_link, pack  # noqa: E402
from serving.metrics import REDIS_COMMANDS, REDIS_WRITES  # noqa: E402

ERROR_SCRIPT = "return redis.error_reply('probe failure ' .. ARGV[1])"


def run_all(link: PipelinedLink, commands: list[tuple]) -> list[tuple[str, str]]:
    """Issue every command from its own greenlet at once; ("ok", reply) or ("error", type: message)."""

    def one(command: tuple) -> tuple[str, str]:
        try:
            reply = link.execute(pack(command))
        except redis.RedisError as error:
            return "error", f"{type(error).__name__}: {error}"
        return "ok", reply.decode() if isinstance(reply, bytes) else str(reply)

    greenlets = [gevent.spawn(one, command) for command in commands]
    gevent.joinall(greenlets, timeout=30)
    return [g.value for g in greenlets]


def main() -> None:
    url, prefix = sys.argv[1], sys.argv[2]
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    link = open_link(client)
    assert isinstance(link, PipelinedLink)
    out: dict[str, object] = {"cooperative": cooperative()}

    # 300 simultaneous commands, each must get its own reply.
    echoes = run_all(link, [("ECHO", f"{prefix}{k}") for k in range(300)])
    out["echo_correct"] = sum(r == ("ok", f"{prefix}{k}") for k, r in enumerate(echoes))
    out["batches"], out["commands"] = REDIS_WRITES._value.get(), REDIS_COMMANDS._value.get()

    # An error reply fails its own command only; the others in the batch are answered.
    mixed = run_all(link, [("EVAL", ERROR_SCRIPT, 0, k) if k % 3 == 0 else ("ECHO", str(k)) for k in range(30)])
    out["mixed_errors"] = [r for r in mixed if r[0] == "error"]
    out["mixed_ok"] = sum(r == ("ok", str(k)) for k, r in enumerate(mixed) if k % 3)

    # The connection is killed while commands wait: they fail with ConnectionError, and
    # the next commands reconnect.
    link_id = link.execute(pack(("CLIENT", "ID")))
    blocked = gevent.spawn(run_all, link, [("BLPOP", f"{prefix}never", 5)] + [("ECHO", "x")] * 5)
    gevent.sleep(0.2)
    redis.Redis.from_url(url).client_kill_filter(_id=link_id)
    blocked.join(timeout=10)
    out["killed"] = sorted({r[0] + (":" + r[1].split(":")[0] if r[0] == "error" else "") for r in blocked.value})
    out["after_kill"] = run_all(link, [("ECHO", "again")])

    # A dead port: every waiting command fails quickly with ConnectionError.
    dead = PipelinedLink(redis.Redis(host="127.0.0.1", port=int(sys.argv[3]), socket_connect_timeout=0.5, socket_timeout=0.5))
    started = time.perf_counter()
    failed = run_all(dead, [("PING",)] * 20)
    out["dead_seconds"] = time.perf_counter() - started
    out["dead"] = sorted({r[1].split(":")[0] for r in failed})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
