"""Association rules from baskets: "frequently bought together".

With B the binary basket x item matrix (n_baskets, n_items), the co-occurrence counts are
C = B^T B (sparse); for a rule i -> j:

* support(i, j)    = C[i, j] / n_baskets
* confidence(i->j) = C[i, j] / C[i, i]
* lift(i->j)       = confidence(i->j) / support(j)

Rules with an antecedent pair {a, b} -> c (``max_itemset_size=3``) come from an apriori
step over the same matrix: only frequent pairs are extended, their basket indicator
columns B[:, a] * B[:, b] are multiplied with B to count every triple at once. Everything is
sparse products and array operations; nothing loops over baskets. A user's (basket's) list
is taken from the sparse combined rule scores, never from a dense users x items block:
while the product is summed (:func:`~recsys.models.topk.sparse_product_top_n`) for
``combine = "sum"``, from the combined entries (:func:`~recsys.models.base.top_n_entries`)
for ``max``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from tqdm.auto import tqdm

from recsys.data.dataset import Dataset
from recsys.errors import ModelError
from recsys.models.base import (
    ModelConfig,
    Recommender,
    diagonal,
    sparse_from_arrays,
    sparse_to_arrays,
    top_n_sparse,
)
from recsys.models.explain import because_sparse, checked_pairs
from recsys.models.topk import sparse_product_top_n

# Nonzeros of one chunk of pair-indicator columns when counting triples (bounds memory).
TRIPLE_CHUNK_NNZ = 20_000_000
METRICS = ("confidence", "lift", "support")


class RulesConfig(ModelConfig):
    """Thresholds a rule must pass, how rules are ranked and how a basket's rules combine.

    ``max_rules_per_item`` keeps the best rules (by ``rank_by``) of each antecedent;
    ``combine`` merges the rules of all items in a basket: ``max`` = best single rule,
    ``sum`` = items suggested by many basket items rank higher.
    """

    min_support: float = Field(0.0, ge=0.0, le=1.0, description="share of baskets holding the whole itemset")
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)
    min_lift: float = Field(0.0, ge=0.0)
    rank_by: Literal["confidence", "lift"] = "confidence"
    max_rules_per_item: int | None = Field(100, ge=1)
    max_itemset_size: int = Field(2, ge=2, le=3, description="2 = pair rules; 3 = also {a, b} -> c")
    combine: Literal["max", "sum"] = "sum"


class RulesRecommender(Recommender):
    """Association rules i -> j (and {a, b} -> c) mined from ``dataset.baskets``.

    Attributes after fit:
        rules: "confidence" / "lift" / "support" -> CSR of shape (n_items, n_items) float32,
            entry [i, j] for every kept rule i -> j (one sparsity structure for all three);
            also the properties ``confidence``, ``lift`` and ``support``.
        item_counts: (n_items,) int64, baskets holding each item.
        n_baskets: number of baskets.
        pair_antecedents: (n_pairs, 2) int32 antecedent pairs {a, b} (a < b) of triple rules.
        rules3: the same three metrics for triple rules, CSR of shape (n_pairs, n_items)
            float32; row p holds the rules pair_antecedents[p] -> j.
    """

    name = "rules"
    config_class = RulesConfig
    requires = frozenset({"baskets"})
    empty_hint = (
        "no rule passed models.rules.min_support, min_confidence and min_lift (lower them), "
        "or every basket holds one item (check the order_id / session_id column)"
    )

    def __init__(self, config: RulesConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.n_baskets = 0
        self.item_counts = np.zeros(0, dtype=np.int64)
        self.rules: dict[str, sp.csr_matrix] = {}
        self.rules3: dict[str, sp.csr_matrix] = {}
        self.pair_antecedents = np.zeros((0, 2), dtype=np.int32)
        self._pair_incidence = sp.csr_matrix((0, 0), dtype=np.float32)

    @property
    def _config(self) -> RulesConfig:
        return self.config  # type: ignore[return-value]

    @property
    def confidence(self) -> sp.csr_matrix:
        return self.rules["confidence"]

    @property
    def lift(self) -> sp.csr_matrix:
        return self.rules["lift"]

    @property
    def support(self) -> sp.csr_matrix:
        return self.rules["support"]

    # -------------------------------------------------------------------- fit
    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        baskets = _binary(dataset.baskets)
        self.n_baskets = int(baskets.shape[0])
        if self.n_baskets == 0:
            raise ModelError(f"{self.name}: the training data has no baskets")
        config = self._config
        csc = sp.csc_matrix(baskets, dtype=np.float64)  # counts stay exact past float32's 2**24
        self.item_counts = np.diff(csc.indptr).astype(np.int64)
        # Apriori: a pair is never more frequent than its items, so rare items drop out first.
        frequent = np.flatnonzero((self.item_counts > 0) & (self.item_counts / self.n_baskets >= config.min_support))
        sub = csc[:, frequent]
        co = self._supported(sub.T @ sub)
        rows, cols, counts = frequent[co.row], frequent[co.col], co.data
        off_diagonal = rows != cols
        rows, cols, counts = rows[off_diagonal], cols[off_diagonal], counts[off_diagonal]
        self.rules = self._build_rules(rows, cols, counts, self.item_counts[rows], (self.n_items, self.n_items))

        self.pair_antecedents = np.zeros((0, 2), dtype=np.int32)
        self.rules3 = {m: sp.csr_matrix((0, self.n_items), dtype=np.float32) for m in METRICS}
        if config.max_itemset_size >= 3:
            upper = rows < cols
            self._fit_triples(csc, frequent, rows[upper], cols[upper], counts[upper], show_progress=show_progress)
        self._prepare()

    def _supported(self, counts: sp.spmatrix) -> sp.coo_matrix:
        """The entries of a count matrix whose support (count / n_baskets) reaches ``min_support``."""
        matrix = sp.csr_matrix(counts)
        matrix.data[matrix.data / self.n_baskets < self._config.min_support] = 0
        matrix.eliminate_zeros()
        return matrix.tocoo()

    def _build_rules(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        counts: np.ndarray,
        antecedent_counts: np.ndarray,
        shape: tuple[int, int],
    ) -> dict[str, sp.csr_matrix]:
        """Filter candidate rules rows -> cols (itemset counts, antecedent counts) into metric CSRs."""
        config = self._config
        n = float(self.n_baskets)
        support = counts / n
        confidence = counts / antecedent_counts
        lift = confidence / (self.item_counts[cols] / n)
        keep = (support >= config.min_support) & (confidence >= config.min_confidence) & (lift >= config.min_lift)
        rows, cols = rows[keep], cols[keep]
        values = {"confidence": confidence[keep], "lift": lift[keep], "support": support[keep]}
        if config.max_rules_per_item is not None and len(rows):
            best = _top_k_per_row(rows, cols, values[config.rank_by], config.max_rules_per_item)
            rows, cols = rows[best], cols[best]
            values = {k: v[best] for k, v in values.items()}
        out = {}
        for metric, data in values.items():
            matrix = sp.csr_matrix((data.astype(np.float32), (rows, cols)), shape=shape)
            matrix.sort_indices()
            out[metric] = matrix
        return out

    def _fit_triples(
        self,
        csc: sp.csc_matrix,
        frequent: np.ndarray,
        first: np.ndarray,
        second: np.ndarray,
        pair_counts: np.ndarray,
        *,
        show_progress: bool = False,
    ) -> None:
        """Rules {first[p], second[p]} -> c for the frequent pairs p (c among the ``frequent`` items), in chunks of pairs."""
        consequents = csc[:, frequent].tocsr()
        cost = np.cumsum(self.item_counts[first] + self.item_counts[second])
        bounds = np.searchsorted(cost, np.arange(TRIPLE_CHUNK_NNZ, int(cost[-1]) if len(cost) else 0, TRIPLE_CHUNK_NNZ))
        pairs, parts = [], {m: [] for m in METRICS}
        chunks = list(zip(np.r_[0, bounds], np.r_[bounds, len(first)], strict=True))
        for lo, hi in tqdm(chunks, desc="rules: triples", unit="chunk", disable=not show_progress or len(chunks) < 2):
            if hi <= lo:
                continue
            a, b = first[lo:hi], second[lo:hi]
            # Column p: the baskets holding both items of pair p.
            both = csc[:, a].multiply(csc[:, b]).tocsc()
            triple = self._supported(both.T @ consequents)
            rows, cols, counts = triple.row, frequent[triple.col], triple.data
            outside = (cols != a[rows]) & (cols != b[rows])
            rows, cols, counts = rows[outside], cols[outside], counts[outside]
            rules = self._build_rules(rows, cols, counts, pair_counts[lo:hi][rows], (hi - lo, self.n_items))
            used = np.flatnonzero(np.diff(rules["confidence"].indptr) > 0)
            pairs.append(np.column_stack([a[used], b[used]]))
            for metric in METRICS:
                parts[metric].append(rules[metric][used])
        if pairs:
            self.pair_antecedents = np.concatenate(pairs).astype(np.int32)
            self.rules3 = {m: sp.csr_matrix(sp.vstack(parts[m], format="csr"), dtype=np.float32) for m in METRICS}

    def _prepare(self) -> None:
        n_pairs = len(self.pair_antecedents)
        # (n_items, n_pairs): basket @ incidence == 2 where a basket holds both items of a pair.
        self._pair_incidence = sp.csr_matrix(
            (
                np.ones(2 * n_pairs, dtype=np.float32),
                (self.pair_antecedents.T.ravel(), np.tile(np.arange(n_pairs), 2)),
            ),
            shape=(self.n_items, n_pairs),
        )

    # ---------------------------------------------------------------- queries
    def bought_together(
        self, item_indices: np.ndarray | list[int] | int, n: int = 10
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items most often bought with each query item, ranked by ``rank_by``.

        Returns (item_indices int32, confidence float32, lift float32), each of shape
        (n_queries, n); padding is -1 / -inf / 0 where an item has fewer than ``n`` rules.
        """
        ids, _ = self.similar_items(item_indices, n)
        queries = np.repeat(self._check_indices(item_indices, self.n_items, "item"), n)
        found = ids.ravel() >= 0
        confidence = np.full(ids.size, -np.inf, dtype=np.float32)
        lift = np.zeros(ids.size, dtype=np.float32)
        targets = ids.ravel()[found]
        confidence[found] = np.asarray(self.confidence[queries[found], targets]).ravel()
        lift[found] = np.asarray(self.lift[queries[found], targets]).ravel()
        return ids, confidence.reshape(ids.shape), lift.reshape(ids.shape)

    def recommend_for_basket(
        self, basket: np.ndarray | list[int] | sp.spmatrix, n: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """Items to add to a basket, from the rules of all its items (``combine``), basket items excluded.

        ``basket``: the item indices of one basket, shape (k,) -> results of shape (n,); or a
        CSR of shape (n_baskets, n_items) (nonzero = in the basket) -> results of shape
        (n_baskets, n). Returns (item_indices int32, scores float32), padded -1 / -inf.
        """
        self._require_fitted()
        self._check_n(n)
        if sp.issparse(basket):
            matrix = _binary(self._check_matrix(basket))
            single = False
        else:
            items = np.unique(self._check_indices(basket, self.n_items, "item"))
            matrix = sp.csr_matrix(
                (np.ones(len(items), dtype=np.float32), (np.zeros(len(items), dtype=np.int64), items)),
                shape=(1, self.n_items),
            )
            single = True
        ids = np.empty((matrix.shape[0], n), dtype=np.int32)
        scores = np.empty((matrix.shape[0], n), dtype=np.float32)
        step = self._batch_size()
        for start in range(0, matrix.shape[0], step):
            batch = matrix[start : start + step]
            ids[start : start + batch.shape[0]], scores[start : start + batch.shape[0]] = self._basket_top_n(batch, n)
        return (ids[0], scores[0]) if single else (ids, scores)

    # ---------------------------------------------------------------- scoring
    def _applying_rules(self, baskets: sp.csr_matrix) -> list[tuple[sp.csr_matrix, sp.csr_matrix]]:
        """(which rule rows apply to each basket, those rules): the basket's items, and the
        antecedent pairs it holds."""
        metric = self._config.rank_by
        applies = [(baskets, self.rules[metric])]
        if len(self.pair_antecedents):
            holds = sp.csr_matrix(baskets @ self._pair_incidence)
            holds.data = (holds.data >= 2).astype(np.float32)
            holds.eliminate_zeros()
            applies.append((holds, self.rules3[metric]))
        return applies

    def _basket_entries(self, baskets: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Combined rule scores of ``baskets`` (binary CSR (n_baskets, n_items)) as entries
        (row, col, value), each (row, col) once; cells without an entry have no rule."""
        applies = self._applying_rules(baskets)
        shape = (baskets.shape[0], self.n_items)
        if self._config.combine == "sum":
            total = sum((sp.csr_matrix(which @ rules) for which, rules in applies), sp.csr_matrix(shape, dtype=np.float32))
            total = sp.csr_matrix(total)
            rows = np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(total.indptr))
            return rows, total.indices.astype(np.int64), total.data
        # Max has no sparse product: one row of rules per (basket, applying row), then the max per cell.
        parts_rows, parts_cols, parts_values = [], [], []
        for which, rules in applies:
            expanded = rules[which.indices]
            owner = np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(which.indptr))
            parts_rows.append(np.repeat(owner, np.diff(expanded.indptr)))
            parts_cols.append(expanded.indices.astype(np.int64))
            parts_values.append(expanded.data)
        keys = np.concatenate(parts_rows) * self.n_items + np.concatenate(parts_cols)
        values = np.concatenate(parts_values)
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
        best = np.maximum.reduceat(values, starts) if len(keys) else values
        return keys[starts] // self.n_items, keys[starts] % self.n_items, best

    def _basket_top_n(
        self, baskets: sp.csr_matrix, n: int, allowed: np.ndarray | None = None, *, exclude_basket: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` of the combined rule scores of ``baskets``, without the basket's own items
        (``exclude_basket``) and items outside ``allowed``: shape (n_baskets, n) each."""
        exclude = baskets if exclude_basket else None
        if self._config.combine == "sum":
            # The sum over the applying rule sets is one product: [which_1 | which_2] @ [rules_1; rules_2].
            applies = self._applying_rules(baskets)
            queries = sp.hstack([which for which, _ in applies], format="csr")
            matrix = sp.vstack([rules for _, rules in applies], format="csr")
            return sparse_product_top_n(queries, matrix, n, exclude=exclude, allowed=allowed)
        rows, cols, values = self._basket_entries(baskets)
        scores = sp.csr_matrix((values, (rows, cols)), shape=(baskets.shape[0], self.n_items))
        return top_n_sparse(scores, n, exclude=exclude, allowed=allowed)

    def _score_baskets(self, baskets: sp.csr_matrix) -> np.ndarray:
        """Dense float32 scores (n_baskets, n_items) combining every rule whose antecedent is in the
        basket; -inf where no rule applies. ``baskets``: binary CSR (n_baskets, n_items)."""
        rows, cols, values = self._basket_entries(baskets)
        block = np.full((baskets.shape[0], self.n_items), -np.inf, dtype=np.float32)
        block[rows, cols] = values
        return block

    def _recommend_block(
        self, users: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._basket_top_n(_binary(self.user_items[users]), n, allowed, exclude_basket=exclude_seen)

    def _similar_block(self, items: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return top_n_sparse(self.rules[self._config.rank_by][items], n, exclude=diagonal(items, self.n_items), allowed=allowed)

    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        return self._score_baskets(_binary(self.user_items[user_indices]))

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        return _dense_or_neg_inf(self.rules[self._config.rank_by][item_indices])

    def explain(self, user_indices: np.ndarray | list[int], item_indices: np.ndarray | list[int]) -> np.ndarray:
        """The seen item ``i`` whose pair rule ``i -> j`` (by ``rank_by``) is strongest for each entry.

        Entries reached only through a triple rule {a, b} -> j get -1.
        """
        users, items = checked_pairs(self, user_indices, item_indices)
        return because_sparse(self.user_items, users, items, self.rules[self._config.rank_by], "nonzero")

    # ------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"item_counts": self.item_counts, "pair_antecedents": self.pair_antecedents}
        for metric in METRICS:
            arrays.update(sparse_to_arrays(metric, self.rules[metric]))
            arrays.update(sparse_to_arrays(f"{metric}3", self.rules3[metric]))
        return {"n_baskets": self.n_baskets}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.n_baskets = int(meta["n_baskets"])
        self.item_counts = arrays["item_counts"]
        self.pair_antecedents = arrays["pair_antecedents"]
        self.rules = {m: sparse_from_arrays(m, arrays) for m in METRICS}
        self.rules3 = {m: sparse_from_arrays(f"{m}3", arrays) for m in METRICS}
        self._prepare()


def _binary(matrix: sp.spmatrix | None) -> sp.csr_matrix:
    """CSR float32 with 1.0 wherever ``matrix`` is nonzero (duplicates merged)."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def _top_k_per_row(rows: np.ndarray, cols: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best entries of each row (score descending, then column ascending), ascending."""
    crowded = np.bincount(rows)[rows] > k  # only rows with more than k entries need sorting
    candidates = np.flatnonzero(crowded)
    order = candidates[np.lexsort((cols[candidates], -score[candidates], rows[candidates]))]
    sorted_rows = rows[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_rows, sorted_rows, side="left")
    return np.sort(np.concatenate([np.flatnonzero(~crowded), order[rank < k]]))


def _dense_or_neg_inf(scores: sp.csr_matrix) -> np.ndarray:
    """Dense float32 copy of a sparse score block; cells with no stored value are -inf."""
    block = np.full(scores.shape, -np.inf, dtype=np.float32)
    block[np.repeat(np.arange(scores.shape[0]), np.diff(scores.indptr)), scores.indices] = scores.data
    return block
