"""The one rule for user, item and session ids, shared by the batch job and the API.

An id is a string (or an integer, written in decimal) of 1 to :data:`MAX_ID_LENGTH`
characters, valid UTF-8, without control characters (C0, DEL, C1), line or paragraph
separators, lone surrogates, or surrounding whitespace. Validation applies it to every
id column, the API to every id it receives, so that nothing is published that the API
could not route, and nothing is accepted that could not be published.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:  # the API imports this module; pandas loads only for validating tables
    import pandas as pd

#: Longest id, in characters (the API's ``RECSYS_MAX_ID_LENGTH`` default).
MAX_ID_LENGTH: Final = 256
#: Characters no id may hold: C0 and C1 controls, DEL, line/paragraph separators, surrogates.
FORBIDDEN_PATTERN: Final = r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"
FORBIDDEN: Final = re.compile(FORBIDDEN_PATTERN)
#: What the rule says, for error messages.
RULE: Final = (
    f"1..{MAX_ID_LENGTH} characters of valid UTF-8 text or a whole number, "
    "no control characters or line breaks, no surrounding spaces"
)


class IdError(ValueError):
    """An id that breaks the rule; the message says which part."""


def check_id(value: Any, *, max_length: int = MAX_ID_LENGTH, allow_int: bool = True) -> str:
    """``value`` as an id string; :class:`IdError` saying why it is not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int, np.integer)) or (
        not allow_int and not isinstance(value, str)
    ):
        raise IdError(f"must be a string{' or a whole number' if allow_int else ''}, got {type(value).__name__}")
    text = value if isinstance(value, str) else str(int(value))
    problem = text_problem(text, max_length)
    if problem:
        raise IdError(problem)
    return text


def text_problem(text: str, max_length: int = MAX_ID_LENGTH) -> str | None:
    """Why the string ``text`` is not an id, or None when it is one."""
    if not text:
        return "must not be empty"
    if len(text) > max_length:
        return f"longer than {max_length} characters ({len(text)})"
    if FORBIDDEN.search(text):
        return "contains control characters, line breaks or invalid unicode"
    if text != text.strip():
        return "must not start or end with whitespace"
    return None


def utf8_problem(raw: bytes) -> str | None:
    """Why raw bytes are not valid UTF-8, or None (a path segment as it came over the wire)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"not valid UTF-8 (byte {error.start})"
    return None


def invalid_ids(raw: pd.Series, text: pd.Series) -> np.ndarray:
    """(n,) bool: rows whose id breaks the rule (missing ids are not flagged: another check
    counts them). ``raw`` holds the values as read (strings, numbers, or Parquet struct /
    list / binary values), ``text`` the same ids as the strings validation made of them."""
    import pandas as pd

    present = text.notna().to_numpy()
    bad = np.zeros(len(text), dtype=bool)
    scalar_kinds = ("string", "integer", "floating", "mixed-integer-float", "empty")
    if raw.dtype == object and pd.api.types.infer_dtype(raw, skipna=True) not in scalar_kinds:
        kinds = raw.map(lambda v: isinstance(v, (str, int, float, np.integer, np.floating)) and not isinstance(v, bool)
                        or v is None or v is pd.NA)
        bad |= ~kinds.to_numpy(dtype=bool)
    elif pd.api.types.is_bool_dtype(raw.dtype):
        bad |= present
    elif pd.api.types.is_float_dtype(raw.dtype):
        numbers = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad |= ~np.isnan(numbers) & (numbers != np.round(numbers))
    # The text rules on each distinct id once (10M rows hold some 300k users).
    codes, uniques = pd.factorize(text)
    strings = pd.Series(uniques, dtype="string")
    lengths = strings.str.len().to_numpy(dtype=np.int64, na_value=0)
    distinct_bad = (lengths > MAX_ID_LENGTH) | strings.str.contains(FORBIDDEN_PATTERN, regex=True).to_numpy(
        dtype=bool, na_value=False
    )
    if distinct_bad.any():
        bad |= (codes >= 0) & distinct_bad[np.maximum(codes, 0)]
    return bad & present
