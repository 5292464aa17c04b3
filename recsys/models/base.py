"""The one interface every recommender implements.

A model is fitted on a :class:`~recsys.data.dataset.Dataset` (or a bare users x items CSR
matrix) and then answers, for many users or items in one batched call, top-N item indices
with their scores. Wrapped libraries (implicit, surprise, scikit-learn) live behind
subclasses as adapters; nothing here knows Redis or raw ids.

A subclass implements:

* ``_fit(dataset)``: learn from the data.
* ``_score_users(user_indices)``: dense scores of shape (len(user_indices), n_items),
  higher is better, ``-inf`` for items the model must never recommend to that user.
* ``_score_items(item_indices)``: dense item-to-item similarities, shape
  (len(item_indices), n_items).
* ``_get_state()`` / ``_set_state(meta, arrays)``: the learned state as JSON-able metadata
  and numpy arrays, so that artifacts are ``.npz`` + JSON and load without pickle.

and may override the batched top-N of one block, when it has a cheaper exact path than
scoring every item (a global ranking, a sparse product, a library's own top-k):

* ``_recommend_block(users, n, exclude_seen, allowed)`` -> (ids int32, scores float32),
  each of shape (len(users), n); ``allowed`` is a boolean mask of shape (n_items,) or None;
* ``_similar_block(items, n, allowed)``, the same for similar items (never the item itself).

Their defaults, ``_recommend_dense`` / ``_similar_dense``, score the dense block and select
from it: the reference every fast path must equal (same items in the same order, ties
aside; tests/models/test_fast_paths.py checks it for every model). Sparse fast paths select
with :func:`top_n_entries`, which orders ties exactly as :func:`top_n` does; products of
user rows with an item matrix select while they sum, row by row, with the compiled kernels
of :mod:`recsys.models.topk` (itemknn, userknn, ease, content).

The base class does batching, excluding seen items, item filters, top-N selection and
argument checks, identically for every model. User (item) blocks are computed on
``threads`` threads at once (0 = all cores): the work inside a block is numpy, scipy or
implicit code that releases the GIL.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError, ModelError

ARTIFACT_FORMAT_VERSION = 1
META_FILE = "model.json"
ARRAYS_FILE = "arrays.npz"

# Dense score blocks are cut to about this many float32 cells (256 MB) per batch.
MAX_BLOCK_CELLS = 64_000_000
# top_n selects from this many cells of a block at a time, to bound its index and sort copies.
SELECT_CHUNK_CELLS = 2_000_000


class ModelConfig(BaseModel):
    """Base of every model's typed configuration: unknown keys are rejected, values validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def format_config_error(model: str, config_class: type[ModelConfig], error: ValidationError) -> str:
    """One readable line per problem, naming the parameter and what is allowed."""
    allowed = ", ".join(config_class.model_fields)
    parts = []
    for problem in error.errors():
        name = ".".join(str(p) for p in problem["loc"]) or "config"
        if problem["type"] == "extra_forbidden":
            parts.append(f"unknown parameter '{name}' (allowed: {allowed})")
        else:
            parts.append(f"parameter '{name}': {problem['msg']} (got {problem.get('input')!r})")
    return f"{model}: " + "; ".join(parts)


def sparse_to_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """The components of a CSR matrix as plain arrays for ``np.savez``."""
    matrix = sp.csr_matrix(matrix)
    return {
        f"{prefix}__data": matrix.data,
        f"{prefix}__indices": matrix.indices,
        f"{prefix}__indptr": matrix.indptr,
        f"{prefix}__shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def sparse_from_arrays(prefix: str, arrays: Mapping[str, np.ndarray]) -> sp.csr_matrix:
    return sp.csr_matrix(
        (arrays[f"{prefix}__data"], arrays[f"{prefix}__indices"], arrays[f"{prefix}__indptr"]),
        shape=tuple(int(v) for v in arrays[f"{prefix}__shape"]),
    )


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_threads(threads: int) -> int:
    """A thread count from a setting: 0 = all cores."""
    return threads if threads > 0 else available_cores()


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` columns of each row of a dense score block, best first.

    Returns (indices int32, scores float32), both shape (rows, n). Rows with fewer than ``n``
    finite scores are padded with index -1 and score -inf. Ties keep the lower index first.
    The selection runs over a few rows at a time (``SELECT_CHUNK_CELLS``), so its partition
    indices and sort keys stay small beside the block.
    """
    rows, cols = scores.shape
    ids = np.full((rows, n), -1, dtype=np.int32)
    best = np.full((rows, n), -np.inf, dtype=np.float32)
    k = min(n, cols)
    if k == 0 or rows == 0:
        return ids, best
    step = max(1, SELECT_CHUNK_CELLS // cols)
    for start in range(0, rows, step):
        chunk = scores[start : start + step]
        if k < cols:
            part = np.argpartition(chunk, cols - k, axis=1)[:, cols - k :]
        else:
            part = np.broadcast_to(np.arange(cols), chunk.shape)
        part_scores = np.take_along_axis(chunk, part, axis=1)
        # Sort by score descending, then index ascending, for deterministic ties.
        order = np.lexsort((part, -part_scores), axis=1)
        chunk_ids = np.take_along_axis(part, order, axis=1)
        chunk_best = np.take_along_axis(part_scores, order, axis=1)
        valid = np.isfinite(chunk_best)
        ids[start : start + len(chunk), :k] = np.where(valid, chunk_ids, -1)
        best[start : start + len(chunk), :k] = np.where(valid, chunk_best, -np.inf)
    return ids, best


def _descending_key(values: np.ndarray) -> np.ndarray:
    """uint64 keys of float32 ``values`` whose ascending order is the values' descending order."""
    # + 0 turns -0.0 into 0.0, which the dense path sees as equal.
    bits = (np.asarray(values, dtype=np.float32) + np.float32(0)).view(np.uint32)
    # IEEE floats order like sign-magnitude integers: flip negatives whole, set the sign bit of positives.
    ascending = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
    return (~ascending).astype(np.uint64)


def top_n_entries(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, n_cols: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` of each row of a sparse score block given as entries (row, col, value).

    ``rows`` / ``cols`` / ``values``: shape (nnz,), each (row, col) at most once, in any order;
    cells without an entry have no score. Returns (indices int32, scores float32) of shape
    (n_rows, n), exactly what :func:`top_n` gives for the dense block with ``-inf`` outside
    the entries: best first, ties by lower column, padded with -1 / -inf.

    One sort of packed uint64 keys (row, descending score, column) orders every row at once;
    blocks whose row and column bits do not fit beside the 32 score bits go in row chunks.
    """
    ids = np.full((n_rows, n), -1, dtype=np.int32)
    best = np.full((n_rows, n), -np.inf, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    if not finite.all():
        rows, cols, values = rows[finite], cols[finite], values[finite]
    if len(values) == 0:
        return ids, best
    col_bits = max(1, int(n_cols - 1).bit_length())
    row_bits = 32 - col_bits
    if row_bits < 1:
        raise ValueError(f"top_n_entries: {n_cols} columns do not fit a 64-bit sort key")
    chunk_rows = 1 << row_bits
    rows = np.asarray(rows, dtype=np.int64)
    if n_rows > chunk_rows:
        for start in range(0, n_rows, chunk_rows):
            inside = (rows >= start) & (rows < start + chunk_rows)
            stop = min(start + chunk_rows, n_rows)
            ids[start:stop], best[start:stop] = top_n_entries(
                rows[inside] - start, cols[inside], values[inside], stop - start, n_cols, n
            )
        return ids, best
    keys = (rows.astype(np.uint64) << np.uint64(32 + col_bits)) | (_descending_key(values) << np.uint64(col_bits))
    keys |= np.asarray(cols, dtype=np.uint64)
    keys.sort()
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    taken = np.minimum(counts, n)
    out_rows = np.repeat(np.arange(n_rows), taken)
    out_cols = np.arange(int(taken.sum())) - np.repeat(np.cumsum(taken) - taken, taken)
    picked = keys[np.repeat(starts, taken) + out_cols]
    ids[out_rows, out_cols] = (picked & np.uint64((1 << col_bits) - 1)).astype(np.int32)
    score_bits = ~((picked >> np.uint64(col_bits)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    best[out_rows, out_cols] = np.where(
        score_bits >> np.uint32(31), score_bits & np.uint32(0x7FFFFFFF), ~score_bits
    ).view(np.float32)
    return ids, best


def top_n_sparse(
    scores: sp.spmatrix,
    n: int,
    *,
    exclude: sp.spmatrix | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_n_entries` of a sparse score block (rows, n_cols): its stored cells are the
    candidates, minus the cells stored in ``exclude`` (same shape, e.g. the users' seen items)
    and the columns where the boolean mask ``allowed`` (n_cols,) is False."""
    block = sp.csr_matrix(scores)
    n_rows, n_cols = block.shape
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(block.indptr))
    cols = block.indices.astype(np.int64)
    keep = np.ones(len(cols), dtype=bool)
    if allowed is not None:
        keep &= allowed[cols]
    if exclude is not None and exclude.nnz:
        excluded = sp.csr_matrix(exclude)
        excluded_keys = np.sort(
            np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(excluded.indptr)) * n_cols + excluded.indices
        )
        keys = rows * n_cols + cols
        position = np.minimum(np.searchsorted(excluded_keys, keys), len(excluded_keys) - 1)
        keep &= excluded_keys[position] != keys
    return top_n_entries(rows[keep], cols[keep], block.data[keep], n_rows, n_cols, n)


def diagonal(indices: np.ndarray, size: int) -> sp.csr_matrix:
    """CSR of shape (len(indices), size) with a 1 at (k, indices[k]): the query items themselves."""
    return sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), (np.arange(len(indices)), indices)), shape=(len(indices), size)
    )


def run_blocks(work: Callable[[int], None], starts: range, threads: int) -> None:
    """Call ``work(start)`` for every block start, on up to ``threads`` threads (errors propagate)."""
    if threads <= 1 or len(starts) <= 1:
        for start in starts:
            work(start)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(starts))) as pool:
        for _ in pool.map(work, starts):
            pass


class Recommender(ABC):
    """Base class of all recommenders.

    Class attributes set by subclasses:
        name: registry name (``"als"``, ``"itemknn"``...).
        config_class: the model's :class:`ModelConfig` subclass.
        requires: what of the :class:`Dataset` beyond ``user_items`` the model needs
            (``"ratings"``, ``"baskets"``, ``"catalog"``).
    """

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    requires: ClassVar[frozenset[str]] = frozenset()
    # Named in the errors of a fit that learned non-finite values, and of a model that
    # recommends nothing: which setting to change.
    non_finite_hint: ClassVar[str] = "check the event weights ([weighting]) and the model's parameters"
    empty_hint: ClassVar[str] = ""

    def __init__(self, config: ModelConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        self.config = self.parse_config(config, **params)
        self.user_items: sp.csr_matrix | None = None
        self.n_users = 0
        self.n_items = 0
        #: threads that compute blocks of users (items) at once, and that libraries use; 0 = all cores.
        #: Not part of the config: results do not depend on it.
        self.threads = 0

    # ----------------------------------------------------------------- config
    @classmethod
    def parse_config(cls, config: ModelConfig | Mapping[str, Any] | None = None, **params: Any) -> ModelConfig:
        """Validate parameters; ``ConfigError`` names the model, the parameter and what is allowed."""
        if isinstance(config, cls.config_class) and not params:
            return config
        values: dict[str, Any] = {}
        if isinstance(config, ModelConfig):
            values.update(config.model_dump())
        elif config is not None:
            values.update(dict(config))
        values.update(params)
        try:
            return cls.config_class(**values)
        except ValidationError as error:
            raise ConfigError(format_config_error(cls.name, cls.config_class, error)) from None

    # -------------------------------------------------------------------- fit
    def fit(self, data: Dataset | sp.spmatrix, *, show_progress: bool = False) -> Self:
        """Learn from ``data``: a Dataset, or a CSR matrix of shape (n_users, n_items)."""
        if isinstance(data, Dataset):
            dataset = data
        elif sp.issparse(data) and data.ndim == 2:
            dataset = Dataset.from_matrix(data)
        else:
            raise ModelError(
                f"{self.name}: fit() takes a Dataset or a sparse users x items matrix, got {type(data).__name__}"
                + (f" of shape {getattr(data, 'shape')}" if hasattr(data, "shape") else "")
            )
        for need in self.requires:
            if getattr(dataset, need) is None:
                raise ModelError(f"{self.name}: needs {need} in the training data, which has none")
        if dataset.user_items.shape[1] == 0:
            raise ModelError(f"{self.name}: cannot fit on a matrix with no items")
        self.user_items = sp.csr_matrix(dataset.user_items, dtype=np.float32)
        self.n_users, self.n_items = self.user_items.shape
        self._fit(dataset, show_progress=show_progress)
        self._check_finite()
        return self

    def _check_finite(self) -> None:
        """ModelError when the learned state holds NaN or infinity (a diverged fit would
        otherwise give empty or meaningless lists without a word)."""
        _, arrays = self._get_state()
        for key, array in arrays.items():
            if not (isinstance(array, np.ndarray) and np.issubdtype(array.dtype, np.floating) and array.size):
                continue
            # One sum first: finite values summing to infinity are rare, NaN always shows.
            if np.isfinite(array.sum(dtype=np.float64)):
                continue
            bad = int(np.count_nonzero(~np.isfinite(array)))
            if bad:
                raise ModelError(
                    f"{self.name}: the fit produced {bad} non-finite values in {key.split('__')[0]} "
                    f"(of {array.size}): {self.non_finite_hint}"
                )

    @property
    def is_fitted(self) -> bool:
        return self.user_items is not None

    @abstractmethod
    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None: ...

    @abstractmethod
    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        """Dense float32 scores, shape (len(user_indices), n_items)."""

    @abstractmethod
    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        """Dense float32 item-item similarities, shape (len(item_indices), n_items)."""

    # -------------------------------------------------------------- recommend
    def recommend(
        self,
        user_indices: np.ndarray | list[int] | int,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        item_filter: np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for many users in one call.

        Args:
            user_indices: row indices, shape (n_queries,) (a scalar is treated as one user).
            n: list length, > 0.
            exclude_seen: leave out items the user has in the training matrix.
            item_filter: allowed item indices (shape (k,)) or a boolean mask of shape
                (n_items,); None allows every item.
            batch_size: users per block (default: a block of about ``MAX_BLOCK_CELLS`` scores);
                blocks run on ``threads`` threads.
        Returns:
            (item_indices int32, scores float32), each of shape (n_queries, n), best first,
            padded with -1 / -inf where fewer than ``n`` items qualify.
        """
        users = self._check_indices(user_indices, self.n_users, "user")
        self._check_n(n)
        allowed = self._allowed_mask(item_filter)
        ids = np.empty((len(users), n), dtype=np.int32)
        scores = np.empty((len(users), n), dtype=np.float32)
        step = batch_size or self._batch_size()

        def work(start: int) -> None:
            batch = users[start : start + step]
            ids[start : start + len(batch)], scores[start : start + len(batch)] = self._recommend_block(
                batch, n, exclude_seen, allowed
            )

        run_blocks(work, range(0, len(users), step), resolve_threads(self.threads))
        return ids, scores

    def similar_items(
        self,
        item_indices: np.ndarray | list[int] | int,
        n: int = 10,
        *,
        item_filter: np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` most similar items to each query item (never the item itself).

        Returns (item_indices int32, scores float32), shape (n_queries, n), as ``recommend``.
        """
        items = self._check_indices(item_indices, self.n_items, "item")
        self._check_n(n)
        allowed = self._allowed_mask(item_filter)
        ids = np.empty((len(items), n), dtype=np.int32)
        scores = np.empty((len(items), n), dtype=np.float32)
        step = batch_size or self._batch_size()

        def work(start: int) -> None:
            batch = items[start : start + step]
            ids[start : start + len(batch)], scores[start : start + len(batch)] = self._similar_block(batch, n, allowed)

        run_blocks(work, range(0, len(items), step), resolve_threads(self.threads))
        return ids, scores

    def _recommend_block(
        self, users: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` of one block of users, shape (len(users), n) each; override with a cheaper exact path."""
        return self._recommend_dense(users, n, exclude_seen, allowed)

    def _similar_block(self, items: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` similar items of one block of items; override with a cheaper exact path."""
        return self._similar_dense(items, n, allowed)

    def _recommend_dense(
        self, users: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The reference path: the dense (len(users), n_items) block, masked, then :func:`top_n`."""
        block = np.asarray(self._score_users(users), dtype=np.float32)
        if exclude_seen:
            seen = self.user_items[users]
            block[np.repeat(np.arange(len(users)), np.diff(seen.indptr)), seen.indices] = -np.inf
        if allowed is not None:
            block[:, ~allowed] = -np.inf
        return top_n(block, n)

    def _similar_dense(self, items: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The reference path of similar items: the dense (len(items), n_items) block, then :func:`top_n`."""
        block = np.asarray(self._score_items(items), dtype=np.float32)
        block[np.arange(len(items)), items] = -np.inf
        if allowed is not None:
            block[:, ~allowed] = -np.inf
        return top_n(block, n)

    def _seen_block(self, users: np.ndarray, exclude_seen: bool) -> sp.csr_matrix | None:
        """The users' rows of the training matrix when seen items are excluded, else None."""
        return self.user_items[users] if exclude_seen else None

    @property
    def explains(self) -> bool:
        """Whether :meth:`explain` gives because items (item-based models, and the ranker
        with an item-based candidate)."""
        return type(self).explain is not Recommender.explain

    def explain(self, user_indices: np.ndarray | list[int], item_indices: np.ndarray | list[int]) -> np.ndarray:
        """The seen item that contributes most to each (user, item) entry's score.

        ``user_indices`` and ``item_indices`` have shape (n,) (item -1, list padding, is
        allowed). Returns (n,) int64 item indices from each user's training history, -1
        where no seen item speaks for the entry. Item-based models and the ranker override
        this; the others raise ModelError.
        """
        raise ModelError(f"{self.name}: gives no 'because' explanations (item-based models and the ranker do)")

    def iter_recommend_all(
        self, n: int, *, exclude_seen: bool = True, batch_size: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Top-``n`` for every user, ``threads`` blocks at a time: yields (user_indices, item_indices, scores)."""
        self._require_fitted()
        step = batch_size or self._batch_size()
        chunk = step * resolve_threads(self.threads)
        for start in range(0, self.n_users, chunk):
            users = np.arange(start, min(start + chunk, self.n_users))
            ids, scores = self.recommend(users, n, exclude_seen=exclude_seen, batch_size=step)
            yield users, ids, scores

    def iter_similar_all(
        self, n: int, *, batch_size: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Top-``n`` similar items for every item: yields (item_indices, item_indices, scores)."""
        self._require_fitted()
        step = batch_size or self._batch_size()
        chunk = step * resolve_threads(self.threads)
        for start in range(0, self.n_items, chunk):
            items = np.arange(start, min(start + chunk, self.n_items))
            ids, scores = self.similar_items(items, n, batch_size=step)
            yield items, ids, scores

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted model to folder ``path``: ``model.json`` + ``arrays.npz``; no pickle."""
        self._require_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta, arrays = self._get_state()
        arrays = {**arrays, **sparse_to_arrays("user_items", self.user_items)}
        document = {
            "format_version": ARTIFACT_FORMAT_VERSION,
            "model": self.name,
            "config": self.config.model_dump(mode="json"),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "state": meta,
        }
        with open(folder / ARRAYS_FILE, "wb") as handle:
            np.savez(handle, **arrays)
        with open(folder / META_FILE, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a model saved by :meth:`save`. Called on the base class, returns the right subclass."""
        folder = Path(path)
        try:
            with open(folder / META_FILE, encoding="utf-8") as handle:
                document = json.load(handle)
        except FileNotFoundError:
            raise ModelError(f"{folder}: not a model artifact (no {META_FILE})") from None
        except json.JSONDecodeError as error:
            raise ModelError(f"{folder / META_FILE}: invalid JSON at line {error.lineno}: {error.msg}") from None
        version = document.get("format_version")
        if version != ARTIFACT_FORMAT_VERSION:
            raise ModelError(
                f"{folder / META_FILE}: artifact format version {version!r}, this version reads {ARTIFACT_FORMAT_VERSION}"
            )
        from recsys.models.registry import get_model_class

        model_class = get_model_class(document["model"]) if cls is Recommender else cls
        if model_class.name != document["model"]:
            raise ModelError(f"{folder}: holds a {document['model']!r} model, not {model_class.name!r}")
        model = model_class(document["config"])
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        model.user_items = sparse_from_arrays("user_items", arrays)
        model.n_users = int(document["n_users"])
        model.n_items = int(document["n_items"])
        model._set_state(document.get("state", {}), arrays)
        return model

    @abstractmethod
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...

    @abstractmethod
    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None: ...

    # ---------------------------------------------------------------- helpers
    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise ModelError(f"{self.name}: call fit() before using the model")

    def _batch_size(self) -> int:
        return int(max(1, min(4096, MAX_BLOCK_CELLS // max(1, self.n_items))))

    def _check_indices(self, indices: np.ndarray | list[int] | int, size: int, what: str) -> np.ndarray:
        self._require_fitted()
        array = np.atleast_1d(np.asarray(indices))
        if array.ndim != 1:
            raise ModelError(f"{self.name}: {what} indices must be one-dimensional, got shape {array.shape}")
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise ModelError(f"{self.name}: {what} indices must be integers, got {array.dtype}")
        array = array.astype(np.int64)
        bad = array[(array < 0) | (array >= size)]
        if bad.size:
            raise ModelError(f"{self.name}: unknown {what} index {int(bad[0])} (model has {size} {what}s)")
        return array

    def _check_n(self, n: int) -> None:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
            raise ModelError(f"{self.name}: n must be a positive integer, got {n!r}")

    def _allowed_mask(self, item_filter: np.ndarray | None) -> np.ndarray | None:
        if item_filter is None:
            return None
        array = np.asarray(item_filter)
        if array.dtype == bool:
            if array.shape != (self.n_items,):
                raise ModelError(f"{self.name}: item_filter mask must have shape ({self.n_items},), got {array.shape}")
            return array
        indices = self._check_indices(array, self.n_items, "item")
        mask = np.zeros(self.n_items, dtype=bool)
        mask[indices] = True
        return mask

    def _check_matrix(self, matrix: sp.spmatrix) -> sp.csr_matrix:
        """A users x items matrix for this fitted model (for ``recommend``-style helpers)."""
        if matrix.shape[1] != self.n_items:
            raise ModelError(f"{self.name}: matrix has {matrix.shape[1]} items, the model was fitted on {self.n_items}")
        return sp.csr_matrix(matrix, dtype=np.float32)
