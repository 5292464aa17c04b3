"""Encoding of one published list as one Redis value (compact JSON).

A list blob is ``{"i": [item ids], "s": [scores]}``; bought-together lists add
``"c"`` (confidence) and ``"l"`` (lift). JSON keeps it readable with ``redis-cli`` and
decodable inside Redis' Lua (``cjson``), which the API uses to read a list and the
catalogue entries of its items in one round trip.

User lists of models that explain add ``"b"``: the ``because`` item of every entry (the
seen item that contributes most to its score) as one string of ``w`` characters per entry
(``w = len(b) / len(i)``, the same for every entry of a blob). Each entry's characters are
the item's *code* in base 92, most significant digit first, with the digits
:data:`CODE_DIGITS` (printable ASCII without space, ``"`` and backslash, so JSON never escapes
them); ``w`` spaces mean no because item. Codes are numbered per version by the publisher
and resolved through the version's ``because-items`` hash, whose fields are the codes'
characters as the blobs hold them and whose values are the finished reasons,
``{"type":"because","item_id":..., "title":...}`` (recsys/store/keys.py): the API splices
them in with one HMGET, decoding nothing. Two characters an entry cover 8,464 items, three
778,688: a code is shorter than a raw id, and a per-entry code costs less than a per-list
table of ids (BENCHMARKS.md, "Explanations").

Reasons: every entry the API serves from a user list carries a reason (docs/api.md). Its
type is ``because`` where the entry has a because item; otherwise the type of its list
(:func:`default_reason`, or what the run recorded: the version metadata's ``reasons``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson

SCORE_DECIMALS = 5

#: Digits of because codes: ASCII 0x21..0x7E without ``"`` and ``\`` (92 characters).
CODE_DIGITS = bytes(c for c in range(0x21, 0x7F) if c not in (0x22, 0x5C))
CODE_BASE = len(CODE_DIGITS)
#: The characters of an entry without a because item.
NO_CODE = 0x20

# Reason types (docs/api.md). ``because`` needs a because item; the others are list types.
BECAUSE = "because"
PERSONALIZED = "personalized"
SIMILAR_USERS = "similar_users"
POPULAR = "popular"
TRENDING = "trending"
LIST_REASONS = (PERSONALIZED, SIMILAR_USERS, POPULAR, TRENDING)


def default_reason(kind: str, model: str | None) -> str:
    """The reason type of a list's entries without a because item, where the run did not
    record one (the Spark backend, older runs): popular for popular and segment lists and
    the popular model, similar_users for userknn, personalized for every other model."""
    if kind in ("popular", "segment") or model == "popular":
        return POPULAR
    if model == "userknn":
        return SIMILAR_USERS
    return PERSONALIZED


def code_width(largest: int) -> int:
    """Characters per entry for codes up to ``largest`` (at least 1)."""
    width, capacity = 1, CODE_BASE
    while largest >= capacity:
        width, capacity = width + 1, capacity * CODE_BASE
    return width


def encode_codes(codes: np.ndarray, width: int) -> np.ndarray:
    """Codes (n,) int, -1 = none, as an (n, width) uint8 array of characters."""
    codes = np.asarray(codes, dtype=np.int64)
    digits = np.frombuffer(CODE_DIGITS, dtype=np.uint8)
    out = np.empty((len(codes), width), dtype=np.uint8)
    rest = np.maximum(codes, 0)
    for position in range(width - 1, -1, -1):
        out[:, position] = digits[rest % CODE_BASE]
        rest //= CODE_BASE
    out[codes < 0] = NO_CODE
    return out


def split_codes(text: str, count: int) -> list[str | None]:
    """One blob's ``"b"`` of ``count`` entries as each entry's code characters (the field of
    the ``because-items`` hash), None where the entry has no because item."""
    if count == 0 or len(text) % count:
        raise ValueError(f"because codes of length {len(text)} do not split into {count} entries")
    width = len(text) // count
    chunks = [text[start : start + width] for start in range(0, len(text), width)]
    return [None if chunk == " " * width else chunk for chunk in chunks]


def decode_codes(text: str, count: int) -> list[int]:
    """The inverse of :func:`encode_codes` for one blob's ``"b"``: codes, -1 = none."""
    value = {c: k for k, c in enumerate(CODE_DIGITS.decode())}
    out = []
    for chunk in split_codes(text, count):
        code = -1
        if chunk is not None:
            code = 0
            for char in chunk:
                code = code * CODE_BASE + value[char]
        out.append(code)
    return out


def because_reason(item_id: str, title: str | None) -> bytes:
    """The reason of an entry with a because item, as the API returns it."""
    return orjson.dumps({"type": BECAUSE, "item_id": item_id, "title": title})


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
    because: np.ndarray | None = None,
    width: int | None = None,
) -> list[bytes]:
    """Many lists of varying length at once (no padding): row ``r`` is
    ``item_ids[offsets[r]:offsets[r + 1]]`` with the same slice of ``scores`` and of every
    ``extra`` array. The blobs equal :func:`encode_list` of each row.

    ``because``: the entries' because codes (shape of ``scores``, -1 = none), written as
    ``"b"`` (see the module docstring) in rows that have at least one, ``width``
    characters a code (default: as few as the largest code needs)."""
    bounds = np.asarray(offsets, dtype=np.int64).tolist()
    rounded = np.round(np.asarray(scores, dtype=np.float64), SCORE_DECIMALS).tolist()
    extras = {k: np.round(np.asarray(v, dtype=np.float64), SCORE_DECIMALS).tolist() for k, v in (extra or {}).items()}
    ids = list(item_ids)
    out = []
    if because is not None and len(because) and (np.asarray(because) >= 0).any():
        codes = np.asarray(because, dtype=np.int64)
        width = width or code_width(int(codes.max()))
        text = encode_codes(codes, width).tobytes().decode("ascii")
        explained = np.r_[0, np.cumsum(codes >= 0)].tolist()
        for start, stop in zip(bounds[:-1], bounds[1:]):
            document = {"i": ids[start:stop], "s": rounded[start:stop]}
            for key, values in extras.items():
                document[key] = values[start:stop]
            if explained[stop] > explained[start]:
                document["b"] = text[start * width : stop * width]
            out.append(orjson.dumps(document))
        return out
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
