"""Content-based recommendations: TF-IDF over the catalogue text.

Items are similar when their title, description and category share rare words. Because the
item vectors come from the catalogue, not from interactions, a brand-new item is recommended
and has similar items from the first day (cold start).

Each configured field gets its own TF-IDF block (scikit-learn ``TfidfVectorizer``, rows
L2-normalised); block ``f`` is scaled by sqrt(weight_f) and the rows of the stacked matrix
are L2-normalised again, so the cosine of two items is the weight-averaged cosine of their
fields. Only the vocabularies and idf vectors are kept (no pickled vectorizer), which is
all :meth:`ContentRecommender.transform_text` needs to embed new text later.

Top-N lists are the dot products of the profiles with the TF-IDF rows, selected by a
:class:`~recsys.models.topk.DotIndex` (items sharing no term with the query are never
candidates): blocks of similar items are visited best bound first until no block left can
hold a top-N item. Profiles reach most of the catalogue when categories share their
vocabulary (11,000 of 20,000 items per user on the generated shop), but only the blocks
that can compete are scored, and neither a sparse product nor a dense block is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, field_validator, model_validator
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from recsys.data import schema
from recsys.data.dataset import Dataset
from recsys.errors import ModelError
from recsys.models.base import ModelConfig, Recommender, diagonal, sparse_from_arrays, sparse_to_arrays
from recsys.models.explain import because_dot, checked_pairs
from recsys.models.topk import DotIndex

TextField = Literal["title", "description", "category"]


class ContentConfig(ModelConfig):
    """TF-IDF settings (scikit-learn's names) and how user profiles are built.

    ``fields``: catalogue field -> weight (>= 0; 0 leaves the field out).
    ``profile``: ``mean`` = every item the user touched counts once; ``weighted`` = by the
    user's interaction weight (purchases count more than views).
    ``min_df``/``max_df``/``max_features`` apply to each field's vocabulary separately.
    """

    fields: dict[TextField, float] = Field(
        default_factory=lambda: {schema.TITLE: 2.0, schema.DESCRIPTION: 1.0, schema.CATEGORY: 1.0}
    )
    ngram_range: tuple[int, int] = (1, 1)
    min_df: int | float = 1
    max_df: float = Field(1.0, gt=0.0, le=1.0)
    max_features: int | None = Field(None, ge=1)
    sublinear_tf: bool = True
    stop_words: Literal["english"] | None = "english"
    profile: Literal["mean", "weighted"] = "weighted"

    @field_validator("fields")
    @classmethod
    def _weights(cls, fields: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in fields.items() if not v >= 0}
        if bad:
            raise ValueError(f"field weights must be >= 0, got {bad}")
        if not any(v > 0 for v in fields.values()):
            raise ValueError("at least one field needs a weight > 0")
        return fields

    @field_validator("min_df")
    @classmethod
    def _min_df(cls, value: int | float) -> int | float:
        if isinstance(value, int) and value < 1 or isinstance(value, float) and not 0.0 <= value <= 1.0:
            raise ValueError(f"min_df must be a count >= 1 or a share in [0, 1], got {value}")
        return value

    @model_validator(mode="after")
    def _ngrams(self) -> ContentConfig:
        low, high = self.ngram_range
        if not 1 <= low <= high:
            raise ValueError(f"ngram_range must be (low, high) with 1 <= low <= high, got {self.ngram_range}")
        return self


class ContentRecommender(Recommender):
    """Cosine similarity of catalogue TF-IDF vectors; users are scored by their profile.

    Profile of a user = L2-normalised (weighted) mean of the TF-IDF rows of the items they
    interacted with; score = profile . item row. Items sharing no term with the query have no
    score (-inf) and are never recommended.

    Attributes after fit:
        item_tfidf: CSR of shape (n_items, n_terms) float32, rows of unit length (all zero
            for items without text).
        vocabularies / idfs: per field, the terms (unicode array, column order) and idf
            weights (float64), shape (n_field_terms,).
    """

    name = "content"
    config_class = ContentConfig
    requires = frozenset({"catalog"})

    def __init__(self, config: ContentConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.item_tfidf = sp.csr_matrix((0, 0), dtype=np.float32)
        self.vocabularies: dict[str, np.ndarray] = {}
        self.idfs: dict[str, np.ndarray] = {}
        self._item_tfidf_t = sp.csr_matrix((0, 0), dtype=np.float32)
        self._index = DotIndex(self.item_tfidf)

    @property
    def _config(self) -> ContentConfig:
        return self.config  # type: ignore[return-value]

    # -------------------------------------------------------------------- fit
    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        catalog = dataset.catalog
        assert catalog is not None  # checked by Recommender.fit through ``requires``
        config = self._config
        self.vocabularies, self.idfs = {}, {}
        blocks: list[sp.csr_matrix] = []
        for field, weight in config.fields.items():
            if weight <= 0:
                continue
            texts = catalog[field].to_numpy(dtype=str) if field in catalog else np.full(len(catalog), "")
            vectorizer = TfidfVectorizer(
                ngram_range=config.ngram_range,
                min_df=config.min_df,
                max_df=config.max_df,
                max_features=config.max_features,
                sublinear_tf=config.sublinear_tf,
                stop_words=config.stop_words,
            )
            try:
                matrix = vectorizer.fit_transform(texts)
            except ValueError as error:
                if "empty vocabulary" in str(error):
                    continue  # the field has no usable words (empty, or only stop words)
                raise ModelError(f"{self.name}: catalogue field '{field}': {error}") from None
            vocabulary = vectorizer.vocabulary_
            terms = sorted(vocabulary, key=vocabulary.__getitem__)
            self.vocabularies[field] = np.asarray(terms, dtype=str)
            self.idfs[field] = np.asarray(vectorizer.idf_, dtype=np.float64)
            blocks.append(sp.csr_matrix(matrix, dtype=np.float64))
        if not blocks:
            names = ", ".join(config.fields)
            raise ModelError(f"{self.name}: the catalogue has no usable text in the fields {names}")
        self.item_tfidf = self._combine(blocks)
        self._prepare()

    def _combine(self, blocks: list[sp.csr_matrix]) -> sp.csr_matrix:
        """Weighted hstack of per-field blocks (in ``self.vocabularies`` order), rows re-normalised."""
        weights = [np.sqrt(self._config.fields[field]) for field in self.vocabularies]  # type: ignore[index]
        stacked = sp.hstack([block * w for block, w in zip(blocks, weights, strict=True)], format="csr")
        out = sp.csr_matrix(normalize(stacked, norm="l2", copy=False), dtype=np.float32)
        out.sort_indices()
        return out

    def _prepare(self) -> None:
        self._item_tfidf_t = sp.csr_matrix(self.item_tfidf.T)
        self._index = DotIndex(self.item_tfidf)

    # ------------------------------------------------------------ new text
    def transform_text(
        self, texts: pd.DataFrame | Mapping[str, Sequence[str]] | Sequence[str]
    ) -> sp.csr_matrix:
        """TF-IDF vectors of new items, CSR of shape (n_texts, n_terms) float32, like ``item_tfidf`` rows.

        ``texts``: a catalogue-like DataFrame (or mapping field -> strings) with the fitted
        fields (a missing field counts as empty), or a sequence of plain strings, used as the
        text of every field (a free-text query). Equals what the fitted vectorizers give.
        """
        self._require_fitted()
        if isinstance(texts, str):
            raise ModelError(f"{self.name}: transform_text() takes a list of texts, not one string")
        if isinstance(texts, (pd.DataFrame, Mapping)):
            present = [field for field in self.vocabularies if field in texts]
            if not present and not isinstance(texts, pd.DataFrame):
                raise ModelError(
                    f"{self.name}: transform_text() got none of the fitted fields {', '.join(self.vocabularies)}"
                )
            columns = {field: _strings(texts[field]) for field in present}  # type: ignore[index]
            lengths = {len(values) for values in columns.values()}
            if len(lengths) > 1:
                raise ModelError(f"{self.name}: transform_text() fields have different lengths {sorted(lengths)}")
            n = lengths.pop() if lengths else len(texts)
            empty = np.full(n, "")
            field_texts = {field: columns.get(field, empty) for field in self.vocabularies}
        else:
            plain = _strings(list(texts))
            field_texts = dict.fromkeys(self.vocabularies, plain)
        blocks = [self._field_tfidf(field, field_texts[field]) for field in self.vocabularies]
        return self._combine(blocks)

    def _field_tfidf(self, field: str, texts: np.ndarray) -> sp.csr_matrix:
        """One field's TF-IDF rows (n_texts, n_field_terms) float64, as TfidfVectorizer.transform gives."""
        config = self._config
        terms = self.vocabularies[field]
        counter = CountVectorizer(
            vocabulary={str(term): k for k, term in enumerate(terms)},
            ngram_range=config.ngram_range,
            stop_words=config.stop_words,
        )
        tf = sp.csr_matrix(counter.transform(texts), dtype=np.float64)
        if config.sublinear_tf:
            np.log(tf.data, out=tf.data)
            tf.data += 1.0
        tf.data *= self.idfs[field][tf.indices]
        return sp.csr_matrix(normalize(tf, norm="l2", copy=False))

    # ---------------------------------------------------------------- scoring
    def _profile_weights(self, user_indices: np.ndarray) -> sp.csr_matrix:
        """How much each seen item counts in the users' profiles, CSR (len(user_indices), n_items)."""
        weights = self.user_items[user_indices]
        if self._config.profile == "mean":
            weights = weights.copy()
            weights.data = np.ones_like(weights.data)
        return weights

    def _profiles(self, user_indices: np.ndarray) -> sp.csr_matrix:
        """Unit-length user profiles, CSR (len(user_indices), n_terms)."""
        return sp.csr_matrix(normalize(sp.csr_matrix(self._profile_weights(user_indices) @ self.item_tfidf), norm="l2", copy=False))

    def _user_scores(self, user_indices: np.ndarray) -> sp.csr_matrix:
        """Sparse cosine of each user's profile with every item sharing a term, (len(users), n_items)."""
        return sp.csr_matrix(self._profiles(user_indices) @ self._item_tfidf_t)

    def _item_scores(self, item_indices: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix(self.item_tfidf[item_indices] @ self._item_tfidf_t)

    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        return _dense_or_neg_inf(self._user_scores(user_indices))

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        return _dense_or_neg_inf(self._item_scores(item_indices))

    def _recommend_block(
        self, users: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        exclude = self._seen_block(users, exclude_seen)
        return self._index.top_n(self._profiles(users), n, exclude=exclude, allowed=allowed)

    def _similar_block(self, items: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        exclude = diagonal(items, self.n_items)
        return self._index.top_n(self.item_tfidf[items], n, exclude=exclude, allowed=allowed)

    def explain(self, user_indices: np.ndarray | list[int], item_indices: np.ndarray | list[int]) -> np.ndarray:
        """The seen item ``i`` with the largest term ``w_ui * cos(i, j)`` of the profile score.

        The profile is a normalised sum, so the terms rank the seen items exactly, though
        removing one also rescales the rest.
        """
        users, items = checked_pairs(self, user_indices, item_indices)
        weighting = "ones" if self._config.profile == "mean" else "stored"
        return because_dot(self.user_items, users, items, self.item_tfidf, weighting)

    # ------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = sparse_to_arrays("item_tfidf", self.item_tfidf)
        for field in self.vocabularies:
            arrays[f"vocabulary__{field}"] = self.vocabularies[field]
            arrays[f"idf__{field}"] = self.idfs[field]
        return {"fields": list(self.vocabularies)}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.item_tfidf = sparse_from_arrays("item_tfidf", arrays)
        self.vocabularies = {field: arrays[f"vocabulary__{field}"] for field in meta["fields"]}
        self.idfs = {field: arrays[f"idf__{field}"] for field in meta["fields"]}
        self._prepare()


def _strings(values: Sequence[str] | pd.Series | np.ndarray) -> np.ndarray:
    """Unicode array of shape (n,); missing values become ""."""
    return pd.Series(values, dtype="string").fillna("").to_numpy(dtype=str)


def _dense_or_neg_inf(scores: sp.csr_matrix) -> np.ndarray:
    """Dense float32 copy of a sparse score block; cells with no stored value are -inf."""
    block = np.full(scores.shape, -np.inf, dtype=np.float32)
    rows = np.repeat(np.arange(scores.shape[0]), np.diff(scores.indptr))
    block[rows, scores.indices] = scores.data
    return block
