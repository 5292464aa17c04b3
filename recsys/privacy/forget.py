"""Forget users: ``recsys forget`` and ``DELETE /v1/admin/users/{id}``.

In this order, so that nothing can bring a user back while they are being removed:

1. a tombstone per user (``{p}forgotten``: sha256 of the id -> time), which every later
   training run, publish-time check and archiver applies;
2. under the publish lock (no version is being written meanwhile): the user's field in
   every per-user list hash of every version kept in Redis (live, retained, pending), their
   recent-items set and the A/B keys held per user;
3. their entries in the events stream (scanned inside Redis, a few thousand entries a
   script call, matches deleted with XDEL);
4. on disk, when the folders are known: their rows in the event archive (under its lock)
   and in the run folders (rewritten, or deleted). When they are not (the API without
   ``RECSYS_FORGET_RUNS`` / ``RECSYS_FORGET_ARCHIVE``), the tombstones are queued in
   ``{p}forgotten:disk`` and the next pipeline run scrubs the folders from the hashes.

The receipt names each user by tombstone only and counts what was removed where.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from recsys.errors import ConfigError
from recsys.events.archive import scrub_archive
from recsys.privacy.runs import RunsMode, scrub_runs
from recsys.privacy.tombstones import hash_user_id, merge_into_file
from recsys.publish.lock import PublishLock
from recsys.store.keys import KeyLayout

MAX_USERS = 10_000
STREAM_SCAN = 2000

# KEYS[1] stream; ARGV[1] start ("-" or "(<id>"), ARGV[2] count, ARGV[3..] user ids.
# Reply: {entries scanned, last id scanned, user id of each deleted entry...}
_STREAM_SCRUB = """
local targets = {}
for i = 3, #ARGV do targets[ARGV[i]] = true end
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local doomed, users = {}, {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == 'user_id' then
      if targets[fields[j + 1]] then
        doomed[#doomed + 1] = entry[1]
        users[#users + 1] = fields[j + 1]
      end
      break
    end
  end
end
if #doomed > 0 then redis.call('XDEL', KEYS[1], unpack(doomed)) end
local reply = {#entries, #entries > 0 and entries[#entries][1] or ''}
for _, user in ipairs(users) do reply[#reply + 1] = user end
return reply
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def check_user_ids(user_ids: Sequence[str]) -> list[str]:
    """Distinct ids in the given order; ConfigError for an empty or oversized request."""
    ids = list(dict.fromkeys(str(u) for u in user_ids))
    if not ids:
        raise ConfigError("give at least one user id to forget")
    if len(ids) > MAX_USERS:
        raise ConfigError(f"at most {MAX_USERS} users per call, got {len(ids)}")
    for user in ids:
        if not user or len(user) > 1024:
            raise ConfigError(f"user id {user[:40]!r}: must be 1 to 1024 characters")
    return ids


def _scrub_stream(client: redis.Redis, layout: KeyLayout, ids: list[str]) -> Counter[str]:
    script = client.register_script(_STREAM_SCRUB)
    removed: Counter[str] = Counter()
    start = "-"
    while True:
        reply = script(keys=[layout.events], args=[start, STREAM_SCAN, *ids])
        scanned, last = int(reply[0]), _text(reply[1])
        removed.update(_text(u) for u in reply[2:])
        if scanned < STREAM_SCAN or not last:
            return removed
        start = f"({last}"


def _scrub_redis(client: redis.Redis, layout: KeyLayout, ids: list[str]) -> dict[str, Any]:
    """Step 2 and 3: per-user list fields, recent sets, per-user A/B keys, stream entries."""
    list_keys = sorted(_text(k) for k in client.scan_iter(match=layout.user_list_pattern(), count=1000))
    # Each version's user -> segment hash, and the published audiences, name users too.
    segment_keys = sorted(_text(k) for k in client.scan_iter(match=layout.segment_of_pattern(), count=1000))
    audience_keys = sorted(
        k for k in (_text(k) for k in client.scan_iter(match=layout.audience_pattern(), count=1000)) if not k.endswith(":meta")
    )
    if segment_keys or audience_keys:
        with client.pipeline(transaction=False) as pipe:
            for key in segment_keys:
                pipe.hdel(key, *ids)
            for key in audience_keys:
                pipe.zrem(key, *ids)
            pipe.execute()
    lists: Counter[str] = Counter()
    versions: set[str] = set()
    with client.pipeline(transaction=False) as pipe:
        for key in list_keys:
            for user in ids:
                pipe.hdel(key, user)
        replies = pipe.execute() if list_keys else []
    position = 0
    root = f"{layout.prefix}v:"
    for key in list_keys:
        versions.add(key[len(root):].split(":user:")[0])
        for user in ids:
            lists[user] += int(replies[position])
            position += 1
    per_user_keys = {user: layout.user_keys(user) for user in ids}
    with client.pipeline(transaction=False) as pipe:
        for user in ids:
            for key in per_user_keys[user]:
                pipe.unlink(key)
        deleted = pipe.execute()
    keys: Counter[str] = Counter()
    position = 0
    for user in ids:
        for _ in per_user_keys[user]:
            keys[user] += int(deleted[position])
            position += 1
    hash_fields: Counter[str] = Counter()
    user_hashes = layout.user_field_hashes()
    if user_hashes:
        with client.pipeline(transaction=False) as pipe:
            for key in user_hashes:
                for user in ids:
                    pipe.hdel(key, user)
            replies = pipe.execute()
        for index, value in enumerate(replies):
            hash_fields[ids[index % len(ids)]] += int(value)
    stream = _scrub_stream(client, layout, ids)
    return {"lists": lists, "keys": keys, "hash_fields": hash_fields, "stream": stream, "versions": sorted(versions)}


def forget_users(
    client: redis.Redis,
    layout: KeyLayout,
    user_ids: Sequence[str],
    *,
    runs_root: str | Path | None = None,
    archive_root: str | Path | None = None,
    runs_mode: RunsMode = "rewrite",
    disk_known: bool = True,
    lock_wait_seconds: float = 30.0,
) -> dict[str, Any]:
    """Forget ``user_ids`` everywhere (see the module docstring); the JSON receipt.

    ``runs_root`` / ``archive_root`` None: the deployment has no such folder. With
    ``disk_known`` False (the API without the folders configured) the disk part is queued.
    """
    ids = check_user_ids(user_ids)
    started = time.time()
    tombstones = {user: hash_user_id(user) for user in ids}
    disk_pending = not disk_known
    if disk_pending:
        runs_root = archive_root = None
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(layout.forgotten, mapping={h: f"{started:.3f}" for h in tombstones.values()})
        if disk_pending:
            pipe.sadd(layout.forgotten_disk, *tombstones.values())
        pipe.execute()
    if runs_root is not None:
        merge_into_file(Path(runs_root), {h: started for h in tombstones.values()})
    with PublishLock(client, layout, ttl_seconds=60.0, wait_seconds=lock_wait_seconds):
        redis_part = _scrub_redis(client, layout, ids)
        hashes = set(tombstones.values())
        runs = scrub_runs(Path(runs_root), hashes, runs_mode) if runs_root is not None else None
    archive = scrub_archive(client, layout, archive_root, hashes) if archive_root is not None else None
    archive_rows = archive["rows_by_tombstone"] if archive else Counter()
    users = []
    for user in ids:
        tomb = tombstones[user]
        users.append(
            {
                "tombstone": tomb,
                "lists": redis_part["lists"][user],
                "keys": redis_part["keys"][user] + redis_part["hash_fields"][user],
                "stream_events": redis_part["stream"][user],
                "archived_events": int(archive_rows.get(tomb, 0)) if archive else None,
                "runs": int(runs.rows.get(tomb, 0)) if runs else None,
            }
        )
    totals = {name: sum(int(u[name] or 0) for u in users) for name in ("lists", "keys", "stream_events", "archived_events", "runs")}
    return {
        "forgotten_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "users": users,
        "totals": totals,
        "versions_scanned": redis_part["versions"],
        "runs": runs.to_json() if runs else {"folder": None, "pending": disk_pending},
        "archive": (
            {"folder": str(archive_root), "files_rewritten": archive["files_rewritten"], "rows": archive["rows"]}
            if archive
            else {"folder": None, "pending": disk_pending}
        ),
        "disk_pending": disk_pending,
        "seconds": round(time.time() - started, 3),
    }


def apply_pending(
    client: redis.Redis,
    layout: KeyLayout,
    *,
    runs_root: str | Path | None,
    archive_root: str | Path | None,
    runs_mode: RunsMode = "rewrite",
) -> dict[str, Any]:
    """Scrub the folders for erasures queued in ``{p}forgotten:disk`` (asked through the
    API); ``None`` = the deployment has no such folder. The queue is emptied of what was
    scrubbed here."""
    pending = {_text(h) for h in client.smembers(layout.forgotten_disk)}
    if not pending:
        return {"pending": 0}
    stored = {h: float(t) for h, t in zip(pending, client.hmget(layout.forgotten, sorted(pending))) if t is not None}
    if runs_root is not None:
        merge_into_file(Path(runs_root), {h: stored.get(h, time.time()) for h in pending})
    runs = scrub_runs(Path(runs_root), pending, runs_mode) if runs_root is not None else None
    archive = scrub_archive(client, layout, archive_root, pending) if archive_root is not None else None
    client.srem(layout.forgotten_disk, *pending)
    return {
        "pending": len(pending),
        "runs": runs.to_json() if runs else None,
        "archive": {k: v for k, v in archive.items() if k != "rows_by_tombstone"} if archive else None,
    }
