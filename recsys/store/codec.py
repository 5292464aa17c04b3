"""Encoding of one published list as one Redis value (compact JSON).

A list blob is ``{"i": [item ids], "s": [scores]}``; bought-together lists add
``"c"`` (confidence) and ``"l"`` (lift). JSON keeps it readable with ``redis-cli`` and
decodable inside Redis' Lua (``cjson``), which the API uses to read a list and the
catalogue entries of its items in one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson

SCORE_DECIMALS = 5


def encode_list(
    item_ids: Sequence[str] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    extra: dict[str, Sequence[float] | np.ndarray] | None = None,
) -> bytes:
    """One list as bytes; entries with an empty id (padding) are dropped."""
    ids = np.asarray(item_ids, dtype=str)
    keep = ids != ""
    document: dict[str, list] = {
        "i": ids[keep].tolist(),
        "s": np.round(np.asarray(scores, dtype=np.float64)[keep], SCORE_DECIMALS).tolist(),
    }
    for key, values in (extra or {}).items():
        document[key] = np.round(np.asarray(values, dtype=np.float64)[keep], SCORE_DECIMALS).tolist()
    return orjson.dumps(document)


def encode_rows(
    item_ids: np.ndarray, scores: np.ndarray, extra: dict[str, np.ndarray] | None = None
) -> list[bytes]:
    """Many lists at once: ``item_ids`` (rows, n) of raw ids ("" = padding), ``scores`` (rows, n)."""
    rounded = np.round(np.asarray(scores, dtype=np.float64), SCORE_DECIMALS)
    ids = np.asarray(item_ids, dtype=str)
    extras = {k: np.round(np.asarray(v, dtype=np.float64), SCORE_DECIMALS) for k, v in (extra or {}).items()}
    out = []
    if not extras and (ids != "").all():
        for row_ids, row_scores in zip(ids.tolist(), rounded.tolist()):
            out.append(orjson.dumps({"i": row_ids, "s": row_scores}))
        return out
    for r in range(ids.shape[0]):
        keep = ids[r] != ""
        document = {"i": ids[r][keep].tolist(), "s": rounded[r][keep].tolist()}
        for key, values in extras.items():
            document[key] = values[r][keep].tolist()
        out.append(orjson.dumps(document))
    return out


def encode_ragged(
    item_ids: Sequence[str],
    offsets: np.ndarray,
    scores: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
) -> list[bytes]:
    """Many lists of varying length at once (no padding): row ``r`` is
    ``item_ids[offsets[r]:offsets[r + 1]]`` with the same slice of ``scores`` and of every
    ``extra`` array. The blobs equal :func:`encode_list` of each row."""
    bounds = np.asarray(offsets, dtype=np.int64).tolist()
    rounded = np.round(np.asarray(scores, dtype=np.float64), SCORE_DECIMALS).tolist()
    extras = {k: np.round(np.asarray(v, dtype=np.float64), SCORE_DECIMALS).tolist() for k, v in (extra or {}).items()}
    ids = list(item_ids)
    out = []
    if not extras:
        for start, stop in zip(bounds[:-1], bounds[1:]):
            out.append(orjson.dumps({"i": ids[start:stop], "s": rounded[start:stop]}))
        return out
    for start, stop in zip(bounds[:-1], bounds[1:]):
        document = {"i": ids[start:stop], "s": rounded[start:stop]}
        for key, values in extras.items():
            document[key] = values[start:stop]
        out.append(orjson.dumps(document))
    return out


def decode_list(blob: bytes | str | None) -> dict[str, list]:
    """The inverse of :func:`encode_list`; an empty list for None."""
    if blob is None:
        return {"i": [], "s": []}
    return orjson.loads(blob)
