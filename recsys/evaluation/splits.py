"""Train/test splits of an interactions table, all seeded, deterministic and vectorised.

Every splitter takes the interactions DataFrame (columns ``user_id``, ``item_id`` and,
where needed, ``timestamp``) and returns ``(train, test)`` DataFrames with the original
rows and index. Per-user work is done with factorised codes, ``np.lexsort`` and
``np.bincount``, never a Python loop per user.

* :func:`stratified_split`: a fraction of each user's (user, item) pairs to test, drawn
  at random; the rule of Microsoft Recommenders' ``python_stratified_split``.
* :func:`temporal_split`: one global cut time; rows before it train, the rest test.
* :func:`leave_last_split`: each user's ``k`` most recent pairs to test.
* :func:`kfold_splits`: ``n`` folds of rows, identical to ``surprise.model_selection.KFold``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.data import schema
from recsys.errors import ConfigError, DataError

SplitMethod = Literal["stratified", "temporal", "leave-last", "kfold"]
SPLIT_METHODS: tuple[str, ...] = ("stratified", "temporal", "leave-last", "kfold")


class SplitSpec(BaseModel):
    """How to split: the method and its parameters (the same spec splits validation off train)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: SplitMethod = "stratified"
    test_size: float = Field(0.25, gt=0.0, lt=1.0, description="share of each user's pairs (stratified) or of rows (temporal)")
    seed: int = 42
    leave_k: int = Field(1, ge=1, description="pairs per user held out by leave-last")
    folds: int = Field(5, ge=2, description="number of folds for kfold")
    cut: int | None = Field(None, description="temporal: unix-seconds cut time instead of the test_size quantile")
    min_user_pairs: int = Field(2, ge=1, description="stratified: users with fewer pairs stay in train")

    @model_validator(mode="after")
    def _cut_only_temporal(self) -> SplitSpec:
        if self.cut is not None and self.method != "temporal":
            raise ValueError("'cut' applies only to the temporal split")
        return self

    def describe(self) -> dict[str, Any]:
        """The parameters that matter for this method, for reports."""
        out: dict[str, Any] = {"method": self.method}
        if self.method == "stratified":
            out.update(seed=self.seed, test_size=self.test_size, min_user_pairs=self.min_user_pairs)
        elif self.method == "temporal":
            out.update(test_size=self.test_size, cut=self.cut)  # deterministic, no seed
        elif self.method == "leave-last":
            out.update(seed=self.seed, leave_k=self.leave_k)
        else:
            out.update(seed=self.seed, folds=self.folds)
        return out


@dataclass(frozen=True)
class Split:
    """One train/test pair and what it holds (sizes, cold-start counts, parameters)."""

    train: pd.DataFrame
    test: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def _require(interactions: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in interactions.columns]
    if missing:
        raise DataError(f"{what}: interactions have no column {', '.join(repr(c) for c in missing)}")


def _timestamps(interactions: pd.DataFrame, what: str) -> np.ndarray:
    _require(interactions, (schema.TIMESTAMP,), what)
    ts = pd.to_numeric(interactions[schema.TIMESTAMP], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(np.isnan(ts))
    if bad.size:
        raise DataError(
            f"{what}: {bad.size} rows have no valid {schema.TIMESTAMP!r} (first at row {int(bad[0])})"
        )
    return ts


def _pairs(interactions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of each row's (user, item) pair, and per pair its user code and first row.

    Returns (row_pair shape (n_rows,), pair_user shape (n_pairs,), pair_first_row shape (n_pairs,)).
    Pair codes follow first appearance, so the first row of pair ``p`` is ``pair_first_row[p]``.
    """
    user_codes, _ = pd.factorize(interactions[schema.USER_ID].astype(str))
    item_codes, _ = pd.factorize(interactions[schema.ITEM_ID].astype(str))
    key = user_codes.astype(np.int64) * (int(item_codes.max(initial=-1)) + 1) + item_codes
    row_pair, _ = pd.factorize(key)
    _, first_row = np.unique(row_pair, return_index=True)
    return row_pair, user_codes[first_row], first_row


def _rank_within(groups: np.ndarray, *sort_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based rank of each element inside its group, ordered by ``sort_keys`` (first key most
    significant), and the size of each element's group. Both shape (len(groups),)."""
    order = np.lexsort((*reversed(sort_keys), groups))
    sorted_groups = groups[order]
    counts = np.bincount(groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - starts[sorted_groups]
    return rank, counts[groups]


def stratified_split(
    interactions: pd.DataFrame, test_size: float = 0.25, seed: int = 42, *, min_user_pairs: int = 2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user, a random ``test_size`` share of their (user, item) pairs goes to test.

    Follows Microsoft Recommenders' ``python_stratified_split(data, ratio=1 - test_size,
    seed=seed)`` (release 1.2): one uniform number per row from
    ``np.random.RandomState(seed).rand(n)``, rows ranked by it inside each user, and the
    first ``round(ratio * count)`` of a user's rows (numpy rounding, half to even) are
    train. On data with one row per (user, item) pair the result is the same rows.
    Differences: all rows of one pair go to the same side (the pair takes the number of
    its first row), and users with fewer than ``min_user_pairs`` pairs stay wholly in train.
    """
    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size must be between 0 and 1 (exclusive), got {test_size}")
    _require(interactions, schema.INTERACTION_REQUIRED, "stratified split")
    if interactions.empty:
        return interactions.copy(), interactions.copy()
    ratio = 1.0 - test_size
    random = np.random.RandomState(seed).rand(len(interactions))
    row_pair, pair_user, first_row = _pairs(interactions)
    rank, count = _rank_within(pair_user, random[first_row])
    pair_train = (rank + 1 <= np.round(ratio * count)) | (count < min_user_pairs)
    in_train = pair_train[row_pair]
    return interactions[in_train], interactions[~in_train]


def leave_last_split(
    interactions: pd.DataFrame, k: int = 1, seed: int = 42, *, min_train_pairs: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's ``k`` most recent (user, item) pairs go to test (all rows of those pairs).

    A pair's time is its latest event; equal times are ordered by a seeded random number.
    Users with fewer than ``k + min_train_pairs`` pairs stay wholly in train.
    """
    if k < 1:
        raise ConfigError(f"leave-last k must be >= 1, got {k}")
    _require(interactions, schema.INTERACTION_REQUIRED, "leave-last split")
    ts = _timestamps(interactions, "leave-last split")
    if interactions.empty:
        return interactions.copy(), interactions.copy()
    row_pair, pair_user, _ = _pairs(interactions)
    pair_time = np.full(len(pair_user), -np.inf)
    np.maximum.at(pair_time, row_pair, ts)
    tie_break = np.random.RandomState(seed).rand(len(pair_user))
    rank, count = _rank_within(pair_user, -pair_time, tie_break)
    pair_test = (rank < k) & (count >= k + min_train_pairs)
    in_test = pair_test[row_pair]
    return interactions[~in_test], interactions[in_test]


def temporal_cut(interactions: pd.DataFrame, test_size: float = 0.25) -> int:
    """The time at which the newest ``test_size`` share of rows starts (unix seconds)."""
    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size must be between 0 and 1 (exclusive), got {test_size}")
    ts = _timestamps(interactions, "temporal split")
    if ts.size == 0:
        raise DataError("temporal split: no interactions")
    position = min(ts.size - 1, int(np.floor(ts.size * (1.0 - test_size))))
    return int(np.partition(ts, position)[position])


def temporal_split(
    interactions: pd.DataFrame, test_size: float = 0.25, *, cut: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows before ``cut`` train, rows at or after it test (one cut for everyone).

    Without ``cut`` it is the time where the newest ``test_size`` share of rows begins;
    rows tied at that time all go to test, so the test share can be a little larger.
    Users and items first seen after the cut are cold in the test set.
    """
    _require(interactions, schema.INTERACTION_REQUIRED, "temporal split")
    ts = _timestamps(interactions, "temporal split")
    if cut is None:
        cut = temporal_cut(interactions, test_size)
    in_test = ts >= cut
    return interactions[~in_test], interactions[in_test]


def kfold_indices(n_rows: int, n_folds: int = 5, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train row positions, test row positions) per fold, exactly as ``surprise``'s KFold.

    Positions are shuffled with ``np.random.RandomState(seed)``; fold ``f`` tests the ``f``-th
    contiguous slice, the first ``n_rows % n_folds`` folds one row longer. Train positions
    keep surprise's order (before the slice, then after it).
    """
    if not 2 <= n_folds <= n_rows:
        raise ConfigError(f"folds must be between 2 and the number of rows ({n_rows}), got {n_folds}")
    indices = np.arange(n_rows)
    np.random.RandomState(seed).shuffle(indices)
    sizes = np.full(n_folds, n_rows // n_folds)
    sizes[: n_rows % n_folds] += 1
    stops = np.cumsum(sizes)
    for start, stop in zip(stops - sizes, stops, strict=True):
        yield np.concatenate((indices[:start], indices[stop:])), indices[start:stop]


def kfold_splits(
    interactions: pd.DataFrame, n_folds: int = 5, seed: int = 0
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """``n_folds`` (train, test) pairs of rows; the folds of ``surprise.model_selection.KFold(
    n_splits=n_folds, random_state=seed)`` on ratings given in the same row order."""
    _require(interactions, schema.INTERACTION_REQUIRED, "kfold split")
    for train_pos, test_pos in kfold_indices(len(interactions), n_folds, seed):
        yield interactions.iloc[train_pos], interactions.iloc[test_pos]


def describe_split(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, int]:
    """Sizes and cold-start counts of a split.

    ``cold_users``/``cold_items``: distinct test users/items with no train row;
    ``cold_test_rows``: test rows whose user or item is cold. They stay in the test set.
    """
    train_users = pd.Index(train[schema.USER_ID].astype(str).unique())
    train_items = pd.Index(train[schema.ITEM_ID].astype(str).unique())
    test_users = test[schema.USER_ID].astype(str)
    test_items = test[schema.ITEM_ID].astype(str)
    cold_user_rows = ~test_users.isin(train_users).to_numpy(dtype=bool)
    cold_item_rows = ~test_items.isin(train_items).to_numpy(dtype=bool)
    return {
        "train_rows": int(len(train)),
        "test_rows": int(len(test)),
        "train_users": int(len(train_users)),
        "test_users": int(test_users.nunique()),
        "train_items": int(len(train_items)),
        "test_items": int(test_items.nunique()),
        "cold_users": int(test_users[cold_user_rows].nunique()),
        "cold_items": int(test_items[cold_item_rows].nunique()),
        "cold_test_rows": int((cold_user_rows | cold_item_rows).sum()),
    }


def split_data(interactions: pd.DataFrame, spec: SplitSpec) -> list[Split]:
    """Split by ``spec``: one :class:`Split` for the holdout methods, ``spec.folds`` for kfold.

    Each split's ``info`` has the spec's parameters, the sizes and cold counts
    (:func:`describe_split`), and for temporal splits the cut time used.
    """
    params = spec.describe()
    if spec.method == "kfold":
        return [
            Split(train, test, {**params, "fold": fold, **describe_split(train, test)})
            for fold, (train, test) in enumerate(kfold_splits(interactions, spec.folds, spec.seed))
        ]
    if spec.method == "stratified":
        train, test = stratified_split(interactions, spec.test_size, spec.seed, min_user_pairs=spec.min_user_pairs)
    elif spec.method == "temporal":
        cut = spec.cut if spec.cut is not None else temporal_cut(interactions, spec.test_size)
        train, test = temporal_split(interactions, cut=cut)
        params["cut"] = cut
    else:
        train, test = leave_last_split(interactions, spec.leave_k, spec.seed)
    if train.empty:
        raise DataError(f"{spec.method} split left no training rows (of {len(interactions)})")
    return [Split(train, test, {**params, **describe_split(train, test)})]
