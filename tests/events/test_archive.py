"""The event archive: a real archiver process killed at several points loses and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import redis

from recsys.events.archive import archive_events, last_archived_id, part_files, read_archive
from recsys.pipeline.events import read_events
from recsys.store.keys import KeyLayout

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000
START_MS = 1_764_633_600_000  # 2025-12-02 00:00 UTC


def fill_stream(client: redis.Redis, layout: KeyLayout, count: int, *, duplicates_every: int = 0, start: int = 0) -> list[str]:
    """``count`` events over three days (explicit stream ids), every ``duplicates_every``-th
    one repeating the event_id of the one before it (a retried ingestion)."""
    ids = []
    with client.pipeline(transaction=False) as pipe:
        for k in range(start, start + count):
            event_id = f"e{k - 1}" if duplicates_every and k % duplicates_every == 0 and k > start else f"e{k}"
            stream_id = f"{START_MS + k * (3 * DAY_MS // 4000)}-{k % 3}"
            pipe.xadd(layout.events, {
                "type": "click", "user_id": f"u{k % 97}", "session_id": "", "item_id": f"i{k % 31}", "value": "",
                "timestamp": str((START_MS + k) // 1000), "recommendation_id": "", "event_id": event_id,
            }, id=stream_id)
            ids.append(stream_id)
        pipe.execute()
    return ids


def expected_ids(client_ids: list[str], duplicates_every: int, start: int = 0) -> list[str]:
    return [s for k, s in enumerate(client_ids, start) if not (duplicates_every and k % duplicates_every == 0 and k > start)]


def archiver(tmp_path: Path, redis_url: str, prefix: str, archive: Path) -> subprocess.Popen[bytes]:
    config = tmp_path / "archive.toml"
    config.write_text("[events]\nbatch = 40\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "recsys.cli.main", "events", "archive", "--archive", str(archive), "--config", str(config),
         "--redis", redis_url, "--prefix", prefix, "--json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def count_parts(archive: Path) -> int:
    return len(part_files(archive)) if archive.exists() else 0


def test_sigkill_at_several_points_then_rerun_archives_every_event_once(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    layout = KeyLayout(key_prefix)
    every = 7
    stream_ids = fill_stream(redis_client, layout, 4000, duplicates_every=every)
    archive = tmp_path / "events"
    kills = []
    for wait_for_files in (0, 1, 6, 20, 45, 70):
        process = archiver(tmp_path, redis_url, key_prefix, archive)
        target = count_parts(archive) + wait_for_files
        deadline = time.monotonic() + 60
        while process.poll() is None and count_parts(archive) < target and time.monotonic() < deadline:
            time.sleep(0.0005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills.append(count_parts(archive))
        process.wait(timeout=30)
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
    assert len(kills) >= 3, kills  # most runs were killed half-way
    final = archiver(tmp_path, redis_url, key_prefix, archive)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    frame = read_archive(archive)
    assert frame["stream_id"].tolist() == expected_ids(stream_ids, every)  # each once, in order
    assert frame["event_id"].is_unique
    assert redis_client.xlen(layout.events) == 0  # moved, not copied
    assert not list(archive.glob("day=*/.tmp-*"))
    days = sorted(p.name for p in archive.iterdir())
    assert days == ["day=2025-12-02", "day=2025-12-03", "day=2025-12-04"]
    assert last_archived_id(archive) == stream_ids[-1]


def test_crash_after_a_file_before_trimming_and_the_pipeline_read(
    tmp_path: Path, redis_client: redis.Redis, key_prefix: str
) -> None:
    layout = KeyLayout(key_prefix)
    archive = tmp_path / "events"
    first = fill_stream(redis_client, layout, 300)

    def crash(_: Path) -> None:
        raise KeyboardInterrupt  # the process dies right after a file is in place

    with pytest.raises(KeyboardInterrupt):
        archive_events(redis_client, layout, archive, batch=100, after_write=crash)
    assert count_parts(archive) == 1 and redis_client.xlen(layout.events) == 300  # written, not trimmed yet
    # Training reads the archive plus the stream after it: every event once.
    frame, report = read_events(redis_client, layout, archive=archive)
    assert report["read"] == 300 and report["archived"] == 100 and len(frame) == 300
    result = archive_events(redis_client, layout, archive, batch=100)
    assert result.written == 200 and redis_client.xlen(layout.events) == 0
    # New events after the archive; a repeated event_id counts once.
    later = fill_stream(redis_client, layout, 50, start=300)
    redis_client.xadd(layout.events, {"type": "click", "user_id": "u1", "item_id": "i1", "event_id": "e310"})
    frame, report = read_events(redis_client, layout, archive=archive)
    assert report["archived"] == 300 and len(frame) == 350 and report["dropped"] == {"duplicate event_id": 1}
    newest, _ = read_events(redis_client, layout, archive=archive, max_events=120)
    assert len(newest) == 119  # the newest 120 entries, one of them the duplicate
    assert read_archive(archive)["stream_id"].tolist() == first
    result = archive_events(redis_client, layout, archive, batch=1000)
    assert result.written == 50 and result.duplicates == 1
    assert read_archive(archive)["stream_id"].tolist() == first + later


def test_untrimmed_stream_is_read_once(tmp_path: Path, redis_client: redis.Redis, key_prefix: str) -> None:
    layout = KeyLayout(key_prefix)
    archive = tmp_path / "events"
    fill_stream(redis_client, layout, 120)
    archive_events(redis_client, layout, archive, batch=50, trim=False)
    fill_stream(redis_client, layout, 30, start=120)
    assert redis_client.xlen(layout.events) == 150
    frame, report = read_events(redis_client, layout, archive=archive)
    assert len(frame) == 150 and report["archived"] == 120
    again = archive_events(redis_client, layout, archive, batch=50, trim=False)
    assert again.written == 30
    assert pd.Series(read_archive(archive)["stream_id"]).is_unique
