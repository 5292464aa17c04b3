"""The event archive: stream entries moved into append-only Parquet files, one folder a day.

Layout under the configured folder (``[events] archive``)::

    day=2026-12-02/part-<first stream id>_<last stream id>.parquet

Every file holds the string columns ``stream_id``, :data:`~recsys.store.keys.EVENT_FIELDS`
and ``event_id`` ("" when the event had none), in stream order; the day is the day (UTC)
the stream received the entries (the time in their stream id). Files are never appended
to: each archiving step writes new ones.

Crash safety without a separate state file: the last archived stream id is the largest
``<last stream id>`` among the file names, and a file appears under its final name only
once complete (written to ``.tmp-*``, fsynced, renamed). An archiver killed at any moment
leaves either no new file (the next run reads the same entries again) or a complete one
(the next run continues after it); archived entries are trimmed from the stream only after
their file is in place. Events with an ``event_id`` already archived are left out, so a
retried ingestion is written once; events of forgotten users (tombstones) are left out
too. One archiver at a time (``{p}events:archive-lock``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from recsys.errors import DataError, StoreError
from recsys.privacy.tombstones import forgotten_mask, read_redis, tombstone_of
from recsys.publish.lock import PublishLock
from recsys.store.keys import EVENT_FIELDS, EVENT_ID_FIELD, KeyLayout

log = logging.getLogger(__name__)

STREAM_ID = "stream_id"
COLUMNS: tuple[str, ...] = (STREAM_ID, *EVENT_FIELDS, EVENT_ID_FIELD)
SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])
PART = re.compile(r"^part-(\d+)-(\d+)_(\d+)-(\d+)\.parquet$")
DAY = re.compile(r"^day=\d{4}-\d{2}-\d{2}$")
DEFAULT_BATCH = 10_000


class ArchiveLock(PublishLock):
    """``{p}events:archive-lock``: one writer of the archive (archiver or erasure) at a time.

    A lock left by a killed process of this host (its pid is gone) is taken over at once
    rather than waited out: the archive is consistent at any moment, so nothing is lost.
    """

    def __init__(self, client: redis.Redis, layout: KeyLayout, *, ttl_seconds: float = 30.0, wait_seconds: float = 30.0) -> None:
        super().__init__(client, layout, ttl_seconds=ttl_seconds, wait_seconds=wait_seconds)
        self.key = layout.archive_lock

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
                self.held = True
                self._renewed_at = time.monotonic()
                return
            holder = self.client.get(self.key)
            if holder is not None and _dead_local_holder(holder.decode(errors="replace")):
                self._release(keys=[self.key], args=[holder])
                continue
            if time.monotonic() >= deadline:
                who = holder.decode(errors="replace") if holder else "unknown"
                raise StoreError(f"the event archive is being written by {who} ({self.key}); try again later")
            time.sleep(0.1)


def _dead_local_holder(token: str) -> bool:
    host, _, rest = token.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def parse_stream_id(stream_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def part_files(root: Path) -> list[Path]:
    """Completed archive files, oldest entries first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for day in root.iterdir():
        if day.is_dir() and DAY.match(day.name):
            for file in day.iterdir():
                match = PART.match(file.name)
                if match:
                    found.append(((int(match.group(1)), int(match.group(2))), file))
    return [file for _, file in sorted(found)]


def last_archived_id(root: Path) -> str | None:
    """The newest stream id in the archive (from the file names), or None when empty."""
    best: tuple[int, int] | None = None
    for file in part_files(root):
        match = PART.match(file.name)
        assert match is not None
        last = (int(match.group(3)), int(match.group(4)))
        best = last if best is None or last > best else best
    return f"{best[0]}-{best[1]}" if best else None


def _read_part(file: Path, columns: Iterable[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(file, columns=list(columns) if columns is not None else None, schema=SCHEMA)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{file}: unreadable archive file ({error})") from None


def read_archive(root: Path) -> pd.DataFrame:
    """Every archived entry, in stream order (columns :data:`COLUMNS`, strings)."""
    files = part_files(root)
    if not files:
        return pd.DataFrame({name: pd.Series(dtype="string") for name in COLUMNS})
    table = pa.concat_tables([_read_part(f) for f in files])
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)


def archived_event_ids(root: Path) -> set[str]:
    """Every non-empty event_id in the archive (to write each event once)."""
    ids: set[str] = set()
    for file in part_files(root):
        column = _read_part(file, [EVENT_ID_FIELD]).column(0).to_pylist()
        ids.update(v for v in column if v)
    return ids


def entries_frame(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> pd.DataFrame:
    """Stream entries (XRANGE replies) as a frame of the archive's string columns.

    The client hands entries over as one dict each, so the columns are gathered from them
    directly (faster than a frame of dicts decoded column by column).
    """
    if not entries:
        return pd.DataFrame({name: pd.Series(dtype="string") for name in COLUMNS})
    out = {STREAM_ID: [e[0].decode() for e in entries]}
    for name in (*EVENT_FIELDS, EVENT_ID_FIELD):
        key = name.encode()
        out[name] = [f.get(key, b"").decode("utf-8", "replace") for _, f in entries]
    return pd.DataFrame(out, dtype=object)


def _write_atomic(table: pa.Table, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{os.getpid()}-{final.name}"
    with open(tmp, "wb") as handle:
        pq.write_table(table, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def clean_tmp(root: Path) -> int:
    """Remove half-written files of killed archivers or erasures; how many."""
    removed = 0
    if Path(root).is_dir():
        for tmp in Path(root).glob("day=*/.tmp-*"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _next_id(stream_id: str) -> str:
    milliseconds, sequence = parse_stream_id(stream_id)
    return f"{milliseconds}-{sequence + 1}"


@dataclass
class ArchiveResult:
    """What one ``recsys events archive`` did."""

    archive: str
    read: int = 0
    written: int = 0
    duplicates: int = 0
    forgotten: int = 0
    trimmed: int = 0
    files: list[str] = field(default_factory=list)
    last_id: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "archive": self.archive,
            "read": self.read,
            "written": self.written,
            "duplicates": self.duplicates,
            "forgotten": self.forgotten,
            "trimmed": self.trimmed,
            "files": self.files,
            "last_id": self.last_id,
            "seconds": round(self.seconds, 3),
        }


def archive_events(
    client: redis.Redis,
    layout: KeyLayout,
    root: str | Path,
    *,
    batch: int = DEFAULT_BATCH,
    trim: bool = True,
    after_write: Callable[[Path], None] | None = None,
) -> ArchiveResult:
    """Move the stream's entries into the archive, ``batch`` entries a step (see module doc).

    ``after_write`` is called after each file is in place (progress, tests).
    """
    started = time.perf_counter()
    folder = Path(root)
    result = ArchiveResult(archive=str(folder))
    with ArchiveLock(client, layout) as lock:
        clean_tmp(folder)
        last = last_archived_id(folder)
        seen = archived_event_ids(folder)
        forgotten = set(read_redis(client, layout))
        if last is not None and trim:
            # A run killed after its last file and before trimming: trim now.
            result.trimmed += int(client.xtrim(layout.events, minid=_next_id(last), approximate=False))
        while True:
            page = client.xrange(layout.events, min=f"({last}" if last else "-", max="+", count=batch)
            if not page:
                break
            frame = entries_frame(page)
            result.read += len(frame)
            event_ids = frame[EVENT_ID_FIELD]
            archived_before = np.fromiter((v in seen for v in event_ids.tolist()), dtype=bool, count=len(event_ids))
            duplicate = (event_ids != "") & (archived_before | event_ids.duplicated(keep="first"))
            result.duplicates += int(duplicate.sum())
            erased = forgotten_mask(frame["user_id"], forgotten)
            result.forgotten += int((erased & ~duplicate.to_numpy()).sum())
            duplicate = duplicate | erased
            milliseconds = frame[STREAM_ID].str.split("-").str[0].astype("int64").to_numpy()
            days = pd.to_datetime(milliseconds, unit="ms", utc=True).strftime("%Y-%m-%d").to_numpy()
            # Days follow stream order; one file per day present in the page, written in order
            # (a file with no row left still records how far the archive has read).
            boundaries = np.r_[0, np.flatnonzero(days[1:] != days[:-1]) + 1, len(frame)]
            for start, end in zip(boundaries[:-1], boundaries[1:]):
                part = frame.iloc[start:end]
                keep = part[~duplicate.iloc[start:end].to_numpy()]
                first_id, last_id = part[STREAM_ID].iloc[0], part[STREAM_ID].iloc[-1]
                name = f"part-{first_id}_{last_id}.parquet"
                target = folder / f"day={days[start]}" / name
                _write_atomic(pa.Table.from_pandas(keep, schema=SCHEMA, preserve_index=False), target)
                result.written += len(keep)
                result.files.append(str(target.relative_to(folder)))
                seen.update(v for v in keep[EVENT_ID_FIELD].tolist() if v)
                last = str(last_id)
                if after_write is not None:
                    after_write(target)
            lock.renew()
            if trim:
                result.trimmed += int(client.xtrim(layout.events, minid=_next_id(str(last)), approximate=False))
    result.last_id = last
    result.seconds = time.perf_counter() - started
    log.info(
        "archived %d events (%d duplicates left out, %d trimmed from the stream) into %s",
        result.written, result.duplicates, result.trimmed, folder,
    )
    return result


def scrub_archive(client: redis.Redis, layout: KeyLayout, root: str | Path, hashes: set[str]) -> dict[str, int]:
    """Rewrite every archive file holding a forgotten user's events without them.

    A file keeps its name (and so the archive's position), even when no row is left.
    Returns {"files_rewritten", "rows", "rows_by_tombstone"}.
    """
    folder = Path(root)
    by_tombstone: Counter[str] = Counter()
    out: dict[str, Any] = {"files_rewritten": 0, "rows": 0, "rows_by_tombstone": by_tombstone}
    if not hashes or not folder.is_dir():
        return out
    with ArchiveLock(client, layout):
        clean_tmp(folder)
        for file in part_files(folder):
            users = _read_part(file, ["user_id"]).column(0).to_pandas()
            found = tombstone_of(users, hashes)
            mask = found != ""
            if not mask.any():
                continue
            table = _read_part(file).filter(pa.array(~mask))
            _write_atomic(table, file)
            out["files_rewritten"] += 1
            out["rows"] += int(mask.sum())
            by_tombstone.update(str(h) for h in found[mask])
    return out


def archive_day(stream_id: str) -> str:
    """The day folder of an entry (UTC day of its stream id)."""
    return datetime.fromtimestamp(parse_stream_id(stream_id)[0] / 1000, UTC).strftime("day=%Y-%m-%d")
