"""Tombstones: the hashed ids of forgotten users, applied to every later training input.

A tombstone is ``sha256("recsys-user:" + user id)`` (hex) and the unix time of the erasure.
The raw id is not kept. Tombstones live in Redis (``{p}forgotten``, what the API writes)
and in ``forgotten.json`` in the runs folder (what training runs without Redis read); the
batch job merges the two. A hash of a guessable id can be tested ("was u17 forgotten?"),
which is what a tombstone is for; it does not list who was forgotten.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import redis

from recsys.store.keys import KeyLayout

TOMBSTONE_FILE = "forgotten.json"
SALT = b"recsys-user:"


def hash_user_id(user_id: str) -> str:
    """The tombstone of one user id."""
    return hashlib.sha256(SALT + user_id.encode("utf-8")).hexdigest()


def tombstone_of(user_ids: pd.Series | np.ndarray | Iterable[str], hashes: set[str] | frozenset[str]) -> np.ndarray:
    """Per id, its tombstone when that is in ``hashes``, else "" (object array).

    Each distinct id is hashed once (ids repeat across rows); hashlib has no batched call.
    """
    values = pd.Series(user_ids if isinstance(user_ids, pd.Series | np.ndarray) else list(user_ids))
    if not hashes or values.empty:
        return np.full(len(values), "", dtype=object)
    codes, uniques = pd.factorize(values.astype("string").fillna(""), sort=False)
    digests = np.array([hash_user_id(str(u)) for u in uniques] + [""], dtype=object)
    hit = np.where(np.isin(digests, np.array(sorted(hashes), dtype=object)), digests, "")
    return hit[codes]  # code -1 (missing) picks the trailing ""


def forgotten_mask(user_ids: pd.Series | np.ndarray | Iterable[str], hashes: set[str] | frozenset[str]) -> np.ndarray:
    """Boolean mask of the ids whose tombstone is in ``hashes``."""
    return tombstone_of(user_ids, hashes) != ""


def read_redis(client: redis.Redis, layout: KeyLayout) -> dict[str, float]:
    """Tombstones stored in Redis: hash -> erasure time."""
    raw = client.hgetall(layout.forgotten)
    return {k.decode() if isinstance(k, bytes) else str(k): float(v) for k, v in raw.items()}


def read_file(runs_root: Path) -> dict[str, float]:
    """Tombstones stored beside the run folders (empty when there is no file yet)."""
    path = Path(runs_root) / TOMBSTONE_FILE
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as error:
        from recsys.errors import DataError

        raise DataError(f"{path}: invalid JSON at line {error.lineno}: {error.msg}") from None
    return {str(k): float(v) for k, v in (document.get("tombstones") or {}).items()}


def merge_into_file(runs_root: Path, tombstones: dict[str, float]) -> dict[str, float]:
    """Add ``tombstones`` to the file (atomic replace); the merged set."""
    root = Path(runs_root)
    merged = read_file(root)
    if all(k in merged for k in tombstones):
        return merged
    for key, at in tombstones.items():
        merged[key] = min(at, merged.get(key, at))
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{TOMBSTONE_FILE}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"hash": "sha256(recsys-user:<id>)", "tombstones": dict(sorted(merged.items()))}, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / TOMBSTONE_FILE)
    return merged


def drop_forgotten(frame: pd.DataFrame, column: str, hashes: set[str] | frozenset[str]) -> tuple[pd.DataFrame, int, int]:
    """``frame`` without the rows of forgotten users; (frame, rows dropped, users dropped)."""
    if not hashes or frame.empty:
        return frame, 0, 0
    mask = forgotten_mask(frame[column], hashes)
    if not mask.any():
        return frame, 0, 0
    users = int(frame[column][mask].nunique())
    return frame[~mask].reset_index(drop=True), int(mask.sum()), users
