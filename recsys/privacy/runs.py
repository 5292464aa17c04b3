"""Removing forgotten users from run folders on disk.

A run folder (see :mod:`recsys.runs.folder`, docs/run-format.md) holds users in its user
lists (Parquet, keyed by raw id) and, for the local backend, in the fitted models and
their user map (``models/``). Rewriting one keeps the run publishable: the users' rows
leave every user list and the user map, the models (per-user factors and matrices, in
each model's own format) are removed, and metadata.json records what was removed. Each
file is written beside its final name and renamed over it. A folder of another format,
or one whose metadata cannot be read, is deleted instead.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recsys.data.idmap import IdMap
from recsys.runs.folder import METADATA_FILE, MODELS_FOLDER, RUN_FORMAT_VERSION, USERS_FILE, completed_runs
from recsys.privacy.tombstones import tombstone_of

RunsMode = Literal["rewrite", "delete"]


@dataclass
class RunsScrub:
    """What scrubbing a runs folder did; ``rows`` counts removed list rows per tombstone."""

    folder: str
    rewritten: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    untouched: int = 0
    rows: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"folder": self.folder, "rewritten": self.rewritten, "deleted": self.deleted, "untouched": self.untouched}


def _replace(path: Path, write: Any) -> None:
    tmp = path.with_name(f".forget-{os.getpid()}-{path.name}")
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def scrub_run(folder: Path, hashes: set[str], mode: RunsMode = "rewrite") -> tuple[str | None, Counter[str]]:
    """Remove forgotten users from one run folder (completed or still in training).

    Returns ("rewritten" | "deleted" | None when the run holds none of them, rows removed
    per tombstone). A folder of another format than 2 (or with unreadable metadata) may
    hold the users and cannot be rewritten: it is deleted.
    """
    if _format_version(folder) == RUN_FORMAT_VERSION:
        return _scrub_parquet_run(folder, hashes, mode)
    shutil.rmtree(folder, ignore_errors=True)
    return "deleted", Counter()


def _format_version(folder: Path) -> object:
    try:
        with open(folder / METADATA_FILE, encoding="utf-8") as handle:
            return json.load(handle).get("format_version")
    except (OSError, ValueError, AttributeError):
        return None


def _scrub_parquet_run(folder: Path, hashes: set[str], mode: RunsMode) -> tuple[str | None, Counter[str]]:
    """Run folder format 2 (lists as Parquet files under ``lists/<name>/``, ``key`` = raw
    user id for user lists): each file holding a forgotten user is rewritten without the
    rows (one atomic replace per file), models are removed, metadata.json records it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(folder / METADATA_FILE, encoding="utf-8") as handle:
        metadata = json.load(handle)
    entries = list(metadata.get("lists") or [])
    found: dict[Path, tuple[pa.Table, np.ndarray]] = {}
    removed: Counter[str] = Counter()
    users_removed: set[str] = set()
    for entry in entries:
        if entry.get("kind") != "user":
            continue
        for file in sorted((folder / entry["path"]).glob("*.parquet")):
            table = pq.read_table(file)
            tombs = tombstone_of(table.column("key").to_pandas(), hashes)
            if (tombs != "").any():
                found[file] = (table, tombs != "")
                users_removed.update(str(t) for t in tombs[tombs != ""])
    segments_file = _segment_table(folder, metadata)
    if segments_file is not None:
        table = pq.read_table(segments_file)
        tombs = tombstone_of(table.column("user_id").to_pandas(), hashes)
        if (tombs != "").any():
            found[segments_file] = (table, tombs != "")
            users_removed.update(str(t) for t in tombs[tombs != ""])
    if not found:
        return None, removed
    removed.update(users_removed)
    if mode == "delete":
        shutil.rmtree(folder, ignore_errors=True)
        return "deleted", removed
    for file, (table, hit) in found.items():
        kept = table.filter(pa.array(~hit))
        _replace(file, lambda handle, t=kept: pq.write_table(t, handle))
    for entry in entries:
        if entry.get("kind") == "user":
            entry["rows"] = int(sum(pq.ParquetFile(f).metadata.num_rows for f in (folder / entry["path"]).glob("*.parquet")))
    models_removed = []
    models = folder / MODELS_FOLDER
    for model_folder in sorted(p for p in models.glob("*") if p.is_dir()) if models.is_dir() else []:
        shutil.rmtree(model_folder, ignore_errors=True)
        models_removed.append(model_folder.name)
    if (models / USERS_FILE).is_file():
        # The local backend's user map: the ids leave it too.
        user_ids = IdMap.load(models / USERS_FILE).ids
        remaining = user_ids[tombstone_of(user_ids, hashes) == ""]
        _replace(models / USERS_FILE, lambda handle: np.savez(handle, ids=remaining))
    history = dict(metadata.get("erasures") or {})
    history["users_removed"] = int(history.get("users_removed", 0)) + len(users_removed)
    history["models_removed"] = sorted(set(history.get("models_removed", [])) | set(models_removed))
    metadata["erasures"] = history
    metadata["lists"] = entries
    counts = dict(metadata.get("counts") or {})
    if isinstance(counts.get("users"), int):
        counts["users"] = max(0, counts["users"] - len(users_removed))
    metadata["counts"] = counts
    text = json.dumps(metadata, indent=2, allow_nan=False, default=str).encode()
    _replace(folder / METADATA_FILE, lambda handle: handle.write(text))
    return "rewritten", removed


def _segment_table(folder: Path, metadata: dict) -> Path | None:
    """The run's segment table (user_id, segment), when it has one."""
    info = metadata.get("segments")
    if not isinstance(info, dict) or not info.get("table"):
        return None
    path = folder / str(info["table"])
    return path if path.is_file() else None


def scrub_runs(root: Path | None, hashes: set[str], mode: RunsMode = "rewrite") -> RunsScrub:
    """Scrub every completed run under ``root`` (and the ones being trained right now are
    scrubbed by their own training before they complete)."""
    result = RunsScrub(folder=str(root) if root is not None else "")
    if root is None or not hashes:
        return result
    for folder in completed_runs(Path(root)):
        outcome, rows = scrub_run(folder, hashes, mode)
        result.rows.update(rows)
        if outcome == "rewritten":
            result.rewritten.append(folder.name)
        elif outcome == "deleted":
            result.deleted.append(folder.name)
        else:
            result.untouched += 1
    return result
