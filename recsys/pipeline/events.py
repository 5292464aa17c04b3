"""Reading the API's logged events back: the event archive plus the Redis events stream.

Stream entries carry the string fields of :data:`recsys.store.keys.EVENT_FIELDS`; they
become interaction rows (``type`` -> event_type). With an archive folder
(``[events] archive``, see :mod:`recsys.events.archive`) the archived entries come first,
then the stream entries after the last archived one, so an entry is read once even when
the stream was not trimmed; events sharing an ``event_id`` count once. Entries without a
user or item, or with a value or timestamp that is not a number, are dropped and counted
(lenient) or raise :class:`~recsys.errors.DataError` naming the stream entry and field
(strict).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis

from recsys.data import schema
from recsys.errors import DataError
from recsys.events.archive import STREAM_ID, entries_frame, last_archived_id, read_archive
from recsys.store.keys import EVENT_ID_FIELD, KeyLayout

log = logging.getLogger(__name__)

PAGE = 10_000
EXAMPLES = 5


def _page_entries(
    client: redis.Redis, key: str, limit: int | None, after: str | None = None
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Stream entries oldest first (after stream id ``after`` when given); the newest ``limit`` when given."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = []
    lowest = f"({after}" if after else "-"
    if limit is None:
        start: bytes | str = lowest
        while True:
            page = client.xrange(key, min=start, max="+", count=PAGE)
            entries.extend(page)
            if len(page) < PAGE:
                return entries
            start = b"(" + page[-1][0]
    end: bytes | str = "+"
    while len(entries) < limit:
        page = client.xrevrange(key, max=end, min=lowest, count=min(PAGE, limit - len(entries)))
        entries.extend(page)
        if len(page) < PAGE:
            break
        end = b"(" + page[-1][0]
    entries.reverse()
    return entries


def read_events(
    client: redis.Redis,
    layout: KeyLayout,
    *,
    max_events: int | None = None,
    strict: bool = False,
    archive: str | Path | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Archive + events stream as an interactions table (schema columns) and a small report.

    Returns (frame, report); the report has ``read`` (``archived`` of them from the
    archive), ``used``, ``dropped`` (reason -> count) and ``examples`` (first offending
    entries with stream id and field).
    """
    archived = read_archive(Path(archive)) if archive is not None else entries_frame([])
    after = last_archived_id(Path(archive)) if archive is not None else None
    # The newest entries are in the stream: read at most max_events there, then the archive's tail.
    streamed = entries_frame(_page_entries(client, layout.events, max_events, after))
    if max_events is not None:
        archived = archived.iloc[max(0, len(archived) - max(0, max_events - len(streamed))) :]
    raw = pd.concat([archived, streamed], ignore_index=True) if len(archived) else streamed
    report: dict[str, Any] = {
        "stream": layout.events,
        "archive": str(archive) if archive is not None else None,
        "read": len(raw),
        "archived": len(archived),
        "used": 0,
        "dropped": {},
        "examples": [],
    }
    columns = [schema.USER_ID, schema.ITEM_ID, schema.EVENT_TYPE, schema.VALUE, schema.TIMESTAMP, schema.SESSION_ID]
    if raw.empty:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in columns}), report
    stream_ids = raw[STREAM_ID].astype(str)
    fields = {name: raw[name].astype("string").fillna("").str.strip() for name in raw.columns if name != STREAM_ID}

    value = pd.to_numeric(fields["value"].replace("", pd.NA), errors="coerce").astype("float64")
    timestamp = pd.to_numeric(fields["timestamp"].replace("", pd.NA), errors="coerce").astype("float64")
    event_ids = fields[EVENT_ID_FIELD]
    problems = {
        "duplicate event_id": ((event_ids != "") & event_ids.duplicated(keep="first")).to_numpy(),
        "missing user_id": (fields["user_id"] == "").to_numpy(),
        "missing item_id": (fields["item_id"] == "").to_numpy(),
        "missing type": (fields["type"] == "").to_numpy(),
        "value not a number": ((fields["value"] != "") & value.isna()).to_numpy(),
        "timestamp not a number": ((fields["timestamp"] != "") & timestamp.isna()).to_numpy(),
    }
    bad = np.zeros(len(raw), dtype=bool)
    for reason, mask in problems.items():
        if not mask.any():
            continue
        field = reason.split()[-1] if reason.startswith(("missing", "duplicate")) else reason.split()[0]
        first = int(np.flatnonzero(mask)[0])
        if strict and not reason.startswith("duplicate"):
            raise DataError(f"{layout.events}: entry {stream_ids.iloc[first]}: field {field!r}: {reason}")
        report["dropped"][reason] = int((mask & ~bad).sum())
        for row in np.flatnonzero(mask & ~bad)[: max(0, EXAMPLES - len(report["examples"]))]:
            report["examples"].append({"entry": stream_ids.iloc[row], "field": field, "reason": reason})
        bad |= mask
    keep = ~bad
    frame = pd.DataFrame(
        {
            schema.USER_ID: fields["user_id"][keep].to_numpy(dtype=str),
            schema.ITEM_ID: fields["item_id"][keep].to_numpy(dtype=str),
            schema.EVENT_TYPE: fields["type"][keep].to_numpy(dtype=str),
            schema.VALUE: value[keep].to_numpy(dtype=np.float64, na_value=np.nan),
            # Missing timestamps get the stream entry's own time (milliseconds in its id).
            schema.TIMESTAMP: timestamp.fillna(stream_ids.str.split("-").str[0].astype("float64") / 1000)[keep]
            .to_numpy(dtype=np.float64)
            .astype(np.int64),
            schema.SESSION_ID: fields["session_id"][keep].replace("", pd.NA).to_numpy(dtype=object),
        }
    )
    for column in (schema.USER_ID, schema.ITEM_ID, schema.EVENT_TYPE, schema.SESSION_ID):
        frame[column] = frame[column].astype("string")
    report["used"] = int(len(frame))
    log.info("read %d events (%d archived) from %s (%d used)", report["read"], report["archived"], layout.events, report["used"])
    return frame, report
