"""Aggregate interaction events into sparse users x items matrices.

Everything here is vectorised: the events are mapped to integer codes once and summed
with ``scipy.sparse.coo_matrix`` (duplicates add up), never a Python loop per row.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.data import schema
from recsys.data.idmap import IdMap


class Weighting(BaseModel):
    """How events become matrix weights.

    weight = event_weights[event_type] (x value when ``use_values``) x 0.5 ** (age / half_life),
    summed over all events of the same (user, item).

    Counts and quantities as weights: ``use_values = true`` multiplies by the value column
    (a missing value counts as 1); ``value_transform = "log"`` uses log2(1 + value) instead,
    so 1 stays 1 and 1,023 becomes 10 (one customer buying 10,000 units of an item then
    does not outweigh everything else).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_weights: dict[str, float] = Field(default_factory=lambda: dict(schema.DEFAULT_EVENT_WEIGHTS))
    default_weight: float = Field(1.0, ge=0, description="weight of event types not in event_weights")
    use_values: bool = Field(False, description="multiply by the value column (quantity, count, rating)")
    value_transform: Literal["linear", "log"] = Field(
        "linear", description="with use_values: the value as is, or log2(1 + value) to damp large counts"
    )
    half_life_days: float | None = Field(None, gt=0, description="exponential time decay; None = off")
    reference_time: int | None = Field(None, description="unix seconds 'now' for decay; None = newest event")
    rating_threshold: float | None = Field(
        None, description="drop rating events whose value is below this (explicit data as implicit)"
    )
    binary: bool = Field(False, description="1.0 for every (user, item) pair that has positive weight")

    @field_validator("event_weights")
    @classmethod
    def _non_negative(cls, weights: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in weights.items() if v < 0}
        if bad:
            raise ValueError(f"event weights must be >= 0, got {bad}")
        return weights


def event_weights(interactions: pd.DataFrame, weighting: Weighting) -> np.ndarray:
    """Weight of each event row, shape (len(interactions),) float64 (before summing per pair)."""
    n = len(interactions)
    if schema.EVENT_TYPE in interactions:
        # Factorise first: a dict lookup per distinct type, not per row.
        codes, types = _factorized(interactions[schema.EVENT_TYPE])
        per_type = np.array(
            [weighting.event_weights.get(str(t), weighting.default_weight) for t in types] + [weighting.default_weight],
            dtype=np.float64,
        )
        weights = per_type[codes]  # code -1 (missing type) takes the last entry, the default
    else:
        weights = np.full(n, weighting.default_weight, dtype=np.float64)

    if weighting.rating_threshold is not None and schema.VALUE in interactions:
        values = interactions[schema.VALUE].to_numpy(dtype=np.float64, na_value=np.nan)
        is_rating = (
            _event_mask(interactions, (schema.RATING,)) if schema.EVENT_TYPE in interactions else ~np.isnan(values)
        )
        weights = np.where(is_rating & ~(values >= weighting.rating_threshold), 0.0, weights)

    if weighting.use_values and schema.VALUE in interactions:
        values = interactions[schema.VALUE].to_numpy(dtype=np.float64, na_value=np.nan)
        factor = np.where(np.isnan(values), 1.0, values)
        if weighting.value_transform == "log":
            factor = np.log2(1.0 + np.clip(factor, 0.0, None))
        weights = weights * factor

    if weighting.half_life_days is not None and schema.TIMESTAMP in interactions:
        ts = interactions[schema.TIMESTAMP].to_numpy(dtype=np.float64, na_value=np.nan)
        now = float(weighting.reference_time) if weighting.reference_time is not None else np.nanmax(ts)
        age_days = np.clip((now - ts) / 86400.0, 0.0, None)
        weights = weights * np.where(np.isnan(age_days), 1.0, np.power(0.5, age_days / weighting.half_life_days))
    return weights


def encode_columns(interactions: pd.DataFrame) -> pd.DataFrame:
    """A shallow copy whose user_id, item_id and event_type columns are categoricals.

    Every builder here looks values up per distinct value; on categoricals that costs
    nothing per row, so encoding once saves a hash pass over the rows in each builder.
    Categories are in order of first appearance. Object columns (maybe mixed ``42`` and
    ``"42"``) are left as they are.
    """
    frame = interactions.copy(deep=False)
    for column in (schema.USER_ID, schema.ITEM_ID, schema.EVENT_TYPE):
        if column in frame and frame[column].dtype != object and not isinstance(frame[column].dtype, pd.CategoricalDtype):
            codes, uniques = pd.factorize(frame[column])
            frame[column] = pd.Categorical.from_codes(codes, categories=uniques)
    return frame


def _factorized(values: pd.Series) -> tuple[np.ndarray, pd.Index | np.ndarray]:
    """(codes (n,) with -1 for missing, distinct values); free for categoricals."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(), values.cat.categories
    return pd.factorize(values)


def _codes(values: pd.Series, ids: IdMap) -> np.ndarray:
    """Index of each raw id in ``ids``, shape (len(values),) int64; -1 where unknown or missing.

    Factorises first so that only the distinct ids are looked up (as strings).
    """
    codes, uniques = _factorized(values)
    lookup = np.append(ids.to_index(np.asarray(uniques).astype(str)), -1)
    return lookup[codes]


def _event_mask(interactions: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """(n,) bool: rows whose event type is one of ``names`` (False where missing)."""
    codes, uniques = _factorized(interactions[schema.EVENT_TYPE])
    hit = np.append(np.isin(np.asarray(uniques).astype(str), list(names)), False)
    return hit[codes]


def build_user_items(
    interactions: pd.DataFrame,
    users: IdMap,
    items: IdMap,
    weighting: Weighting | None = None,
) -> sp.csr_matrix:
    """CSR matrix of shape (len(users), len(items)), float32, summed event weights.

    Rows whose user or item is not in the maps are ignored; pairs whose total weight is 0
    (for example only impressions) are dropped from the sparsity structure.
    """
    weighting = weighting or Weighting()
    rows = _codes(interactions[schema.USER_ID], users)
    cols = _codes(interactions[schema.ITEM_ID], items)
    weights = event_weights(interactions, weighting)
    keep = (rows >= 0) & (cols >= 0) & (weights != 0)
    matrix = sp.coo_matrix(
        (weights[keep], (rows[keep], cols[keep])), shape=(len(users), len(items)), dtype=np.float64
    ).tocsr()
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if weighting.binary:
        matrix.data = (matrix.data > 0).astype(np.float64)
        matrix.eliminate_zeros()
    out = matrix.astype(np.float32)
    out.sort_indices()
    return out


def build_ratings(interactions: pd.DataFrame, users: IdMap, items: IdMap) -> sp.csr_matrix | None:
    """CSR matrix (n_users, n_items) float32 of explicit ratings, the mean where a pair is rated twice.

    Uses rows whose event type is ``rating`` (or every row with a value when there is no
    event type column). None when the data has no ratings.
    """
    if schema.VALUE not in interactions:
        return None
    values = interactions[schema.VALUE].to_numpy(dtype=np.float64, na_value=np.nan)
    mask = ~np.isnan(values)
    if schema.EVENT_TYPE in interactions:
        mask &= _event_mask(interactions, (schema.RATING,))
    if not mask.any():
        return None
    sub = interactions[[schema.USER_ID, schema.ITEM_ID]].loc[mask]
    rows = _codes(sub[schema.USER_ID], users)
    cols = _codes(sub[schema.ITEM_ID], items)
    ok = (rows >= 0) & (cols >= 0)
    rows, cols, vals = rows[ok], cols[ok], values[mask][ok]
    shape = (len(users), len(items))
    sums = sp.coo_matrix((vals, (rows, cols)), shape=shape).tocsr()
    counts = sp.coo_matrix((np.ones_like(vals), (rows, cols)), shape=shape).tocsr()
    sums.sum_duplicates()
    counts.sum_duplicates()
    ratings = sums.copy()
    ratings.data = sums.data / counts.data
    ratings = ratings.astype(np.float32)
    ratings.sort_indices()
    return ratings


def build_baskets(
    interactions: pd.DataFrame,
    items: IdMap,
    basket_columns: tuple[str, ...] = (schema.ORDER_ID, schema.SESSION_ID),
    event_types: tuple[str, ...] | None = None,
) -> sp.csr_matrix | None:
    """Binary CSR matrix of shape (n_baskets, n_items): which items were together in a basket.

    The first of ``basket_columns`` present in the data (with any non-null value) defines the
    baskets; ``event_types`` (e.g. ``("purchase",)``) restricts the events that count. Baskets
    are keyed by (user, basket id) so that two users' sessions never merge. None when the
    data has no basket column.
    """
    column = next(
        (c for c in basket_columns if c in interactions and interactions[c].notna().any()), None
    )
    if column is None:
        return None
    keep = interactions[column].notna().to_numpy().copy()
    if event_types is not None and schema.EVENT_TYPE in interactions:
        keep &= _event_mask(interactions, tuple(event_types))
    frame = interactions[[schema.USER_ID, schema.ITEM_ID, column]].loc[keep]
    if frame.empty:
        return sp.csr_matrix((0, len(items)), dtype=np.float32)
    # A basket is a (user, basket id) pair: combine the two factorised codes into one key.
    user_codes, _ = _factorized(frame[schema.USER_ID])
    basket_ids, basket_uniques = pd.factorize(frame[column])
    basket_key = (user_codes.astype(np.int64) + 1) * (len(basket_uniques) + 1) + (basket_ids + 1)
    basket_codes, _ = pd.factorize(basket_key)
    cols = _codes(frame[schema.ITEM_ID], items)
    ok = cols >= 0
    matrix = sp.coo_matrix(
        (np.ones(int(ok.sum()), dtype=np.float32), (basket_codes[ok], cols[ok])),
        shape=(int(basket_codes.max()) + 1, len(items)),
    ).tocsr()
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


def build_last_times(interactions: pd.DataFrame, users: IdMap, items: IdMap) -> sp.csr_matrix | None:
    """CSR (n_users, n_items) float64: unix seconds of each (user, item) pair's latest event.

    Every pair with a valid timestamp is stored (zero-weight events included), so callers
    align it to ``user_items`` by lookup. None when the data has no timestamps.
    """
    if schema.TIMESTAMP not in interactions:
        return None
    ts = pd.to_numeric(interactions[schema.TIMESTAMP], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    rows = _codes(interactions[schema.USER_ID], users)
    cols = _codes(interactions[schema.ITEM_ID], items)
    ok = (rows >= 0) & (cols >= 0) & ~np.isnan(ts)
    if not ok.any():
        return None
    key = rows[ok].astype(np.int64) * len(items) + cols[ok]
    unique, inverse = np.unique(key, return_inverse=True)
    latest = np.full(len(unique), -np.inf)
    np.maximum.at(latest, inverse, ts[ok])
    matrix = sp.csr_matrix(
        (latest, (unique // len(items), unique % len(items))), shape=(len(users), len(items)), dtype=np.float64
    )
    matrix.sort_indices()
    return matrix


def item_trending(
    interactions: pd.DataFrame,
    items: IdMap,
    weighting: Weighting | None = None,
    half_life_days: float = 7.0,
    window_days: float | None = 30.0,
) -> np.ndarray | None:
    """Decayed recent weight per item, shape (n_items,) float32: what is popular *now*.

    Events older than ``window_days`` before the newest event are ignored; the rest decay
    with ``half_life_days``. None when the data has no timestamps.
    """
    if schema.TIMESTAMP not in interactions:
        return None
    ts = interactions[schema.TIMESTAMP].to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(ts).all():
        return None
    now = np.nanmax(ts)
    base = event_weights(interactions, (weighting or Weighting()).model_copy(update={"half_life_days": None}))
    age_days = (now - ts) / 86400.0
    decayed = base * np.power(0.5, age_days / half_life_days)
    if window_days is not None:
        decayed = np.where(age_days <= window_days, decayed, 0.0)
    decayed = np.nan_to_num(decayed, nan=0.0)
    cols = _codes(interactions[schema.ITEM_ID], items)
    ok = cols >= 0
    return np.bincount(cols[ok], weights=decayed[ok], minlength=len(items)).astype(np.float32)
