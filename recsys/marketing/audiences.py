"""Published audiences: the top-k customers of ``recsys propensity --publish NAME`` in Redis,
for the API's ``GET /v1/admin/audiences/{name}`` (keys in recsys/store/keys.py).

An audience is a sorted set (user id -> score) and a JSON meta string. It is written into a
temporary key first and moved into place with RENAME in the same MULTI/EXEC as its meta, so
a reader sees the old audience whole or the new one whole, never a half-written one.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import orjson
import redis

from recsys.abtest.experiments import NAME_PATTERN
from recsys.errors import ConfigError
from recsys.store.keys import KeyLayout

NAME = re.compile(NAME_PATTERN)
#: Members per ZADD while writing the temporary key.
WRITE_BATCH = 5000
#: An unfinished temporary key (killed writer) expires on its own.
TMP_TTL_SECONDS = 3600


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ConfigError(f"audience name must match {NAME_PATTERN}, got {name!r}")
    return name


def publish_audience(
    client: redis.Redis,
    layout: KeyLayout,
    name: str,
    users: list[str],
    scores: list[float],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Replace audience ``name`` by ``users`` with ``scores``; the stored meta."""
    check_name(name)
    if len(users) != len(scores):
        raise ValueError(f"{len(users)} users for {len(scores)} scores")
    document = {**meta, "name": name, "size": len(users), "created_at": time.time()}
    tmp = layout.audience_tmp(name, secrets.token_hex(6))
    try:
        with client.pipeline(transaction=False) as pipe:
            for start in range(0, len(users), WRITE_BATCH):
                chunk = dict(zip(users[start : start + WRITE_BATCH], (float(s) for s in scores[start : start + WRITE_BATCH])))
                pipe.zadd(tmp, chunk)
            pipe.expire(tmp, TMP_TTL_SECONDS)
            pipe.execute()
        with client.pipeline(transaction=True) as pipe:
            if users:
                pipe.persist(tmp)
                pipe.rename(tmp, layout.audience(name))
            else:
                pipe.delete(layout.audience(name))
            pipe.set(layout.audience_meta(name), orjson.dumps(document))
            pipe.execute()
    except BaseException:
        client.delete(tmp)
        raise
    return document


def read_audience(client: redis.Redis, layout: KeyLayout, name: str, offset: int = 0, limit: int = 100) -> dict[str, Any] | None:
    """Meta plus ``limit`` members from rank ``offset`` (best first); None for an unknown name.
    Meta and members are read in one MULTI, so they belong to the same publish."""
    with client.pipeline(transaction=True) as pipe:
        pipe.get(layout.audience_meta(name))
        pipe.zrevrange(layout.audience(name), offset, offset + limit - 1, withscores=True)
        pipe.zcard(layout.audience(name))
        raw, members, total = pipe.execute()
    if raw is None:
        return None
    meta = orjson.loads(raw)
    return {
        **meta,
        "size": int(total),
        "offset": offset,
        "limit": limit,
        "users": [{"user_id": user.decode(), "score": float(score)} for user, score in members],
    }


def list_audiences(client: redis.Redis, layout: KeyLayout, limit: int = 100) -> list[dict[str, Any]]:
    """The metas of the published audiences (at most ``limit``, by name), each with its current
    ``size``; no members are read."""
    suffix = ":meta"
    metas = sorted(
        {key.decode() if isinstance(key, bytes) else str(key) for key in client.scan_iter(match=layout.audience_pattern(), count=1000)}
    )
    metas = [key for key in metas if key.endswith(suffix)][:limit]
    if not metas:
        return []
    with client.pipeline(transaction=False) as pipe:
        for key in metas:
            pipe.get(key)
            pipe.zcard(key[: -len(suffix)])
        replies = pipe.execute()
    out = []
    for raw, total in zip(replies[0::2], replies[1::2]):
        if raw is None:
            continue
        try:
            meta = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(meta, dict):
            out.append({**meta, "size": int(total)})
    return out
