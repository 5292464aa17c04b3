"""Offline comparison of models: split the data, fit each model on train, score it on test.

The train and test matrices of a split share one pair of id maps built from the full data,
so row ``u`` and column ``i`` mean the same user and item in both. Models are created from
the registry (or any factory returning a :class:`~recsys.models.base.Recommender`) and used
only through ``fit``, ``recommend`` and, for rating metrics, ``predict``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from recsys.data import schema
from recsys.data.dataset import Dataset
from recsys.data.idmap import IdMap
from recsys.data.mapping import DataMapping
from recsys.data.matrix import Weighting, build_ratings, build_user_items
from recsys.errors import ConfigError, DataError, RecsysError
from recsys.evaluation import metrics
from recsys.evaluation.splits import Split, SplitSpec, split_data
from recsys.models.base import Recommender
from recsys.models.registry import get_model_class

log = logging.getLogger(__name__)

ModelFactory = Callable[[], Recommender]


class EvaluationSettings(BaseModel):
    """What is scored and how.

    ``relevance_threshold``: None = every test interaction (with positive default event
    weight) is relevant; a number = rating events below it are not relevant.
    ``cold_users``: ``exclude`` leaves test users without training interactions out of the
    ranking metrics (they are counted in the split info); ``include`` scores them too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(10, ge=1)
    relevance_threshold: float | None = None
    rating_metrics: bool = False
    cold_users: Literal["exclude", "include"] = "exclude"
    weighting: Weighting = Field(default_factory=Weighting)


def parse_relevance(text: str) -> float | None:
    """``"all"`` -> None, ``"threshold:4"`` -> 4.0; ConfigError otherwise."""
    value = text.strip().lower()
    if value == "all":
        return None
    if value.startswith("threshold:"):
        try:
            return float(value.split(":", 1)[1])
        except ValueError:
            pass
    raise ConfigError(f"--relevance must be 'all' or 'threshold:NUMBER', got {text!r}")


# ----------------------------------------------------------------------------- data
@dataclass
class LoadedInput:
    """Interactions (schema columns), optional catalogue, and what was read."""

    interactions: pd.DataFrame
    catalog: pd.DataFrame | None
    info: dict[str, Any] = field(default_factory=dict)


def load_input(
    path: str | Path,
    fmt: str = "auto",
    catalog: str | Path | None = None,
    *,
    strict: bool = False,
    mapping: DataMapping | None = None,
) -> LoadedInput:
    """Read and validate interactions (and a catalogue) with :func:`recsys.data.loaders.load`.

    ``mapping`` names the shop's columns, events, dates and cancellations (``[data]``).
    ``info`` names the data set and records the resolved format, the files read and how
    many rows validation kept and dropped, for the evaluation report.
    """
    from recsys.data.loaders import load

    loaded = load(path, format=fmt, catalog=catalog, strict=strict, mapping=mapping)
    report = loaded.report.to_dict()
    info: dict[str, Any] = {
        "name": Path(path).name,
        **loaded.source.to_dict(),
        "rows_read": report["rows"],
        "rows_dropped": report["dropped"],
    }
    if not loaded.report.ok:
        for line in loaded.report.lines():
            log.warning("%s", line)
    return LoadedInput(loaded.interactions, loaded.catalog, info)


# ----------------------------------------------------------------------------- models
def model_factories(names: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, ModelFactory]:
    """Factories for registry models, parameters validated now (ConfigError before any work)."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ConfigError(f"parameters given for {', '.join(unknown)}, which is not among the models ({', '.join(names)})")
    if len(set(names)) != len(names):
        raise ConfigError(f"a model is listed twice: {', '.join(names)}")
    factories: dict[str, ModelFactory] = {}
    for name in names:
        model_class = get_model_class(name)
        config = model_class.parse_config(dict(params.get(name, {})))
        factories[name] = lambda model_class=model_class, config=config: model_class(config)
    return factories


# ----------------------------------------------------------------------------- one split
@dataclass
class PreparedSplit:
    """A split turned into aligned matrices.

    Attributes:
        train: the training Dataset (shares ``users``/``items`` with the test matrices).
        relevant: CSR (n_users, n_items), the relevant test pairs, minus pairs already in train.
        ratings: CSR (n_users, n_items) float32 test ratings, or None.
        eval_users: user indices scored by the ranking metrics, shape (m,).
        popularity: (n_items,) share of training users per item.
        info: the split's info plus relevance counts.
    """

    train: Dataset
    relevant: sp.csr_matrix
    ratings: sp.csr_matrix | None
    eval_users: np.ndarray
    popularity: np.ndarray
    info: dict[str, Any]


def id_maps(interactions: pd.DataFrame, catalog: pd.DataFrame | None = None) -> tuple[IdMap, IdMap]:
    """User and item maps of the full data (catalogue-only items appended), as Dataset builds them."""
    users = IdMap.from_values(interactions[schema.USER_ID])
    items = IdMap.from_values(interactions[schema.ITEM_ID])
    if catalog is not None and len(catalog):
        items = items.extend(catalog[schema.ITEM_ID].astype(str).to_numpy())
    return users, items


def prepare_split(
    split: Split,
    users: IdMap,
    items: IdMap,
    settings: EvaluationSettings,
    catalog: pd.DataFrame | None = None,
) -> PreparedSplit:
    """Build the train Dataset and the test matrices of ``split`` on the shared id maps."""
    train = Dataset.from_interactions(split.train, catalog, settings.weighting, users=users, items=items)
    test_weighting = Weighting(rating_threshold=settings.relevance_threshold)
    relevant = build_user_items(split.test, users, items, test_weighting)
    relevant.data[:] = 1.0
    in_train = relevant.multiply(train.user_items > 0).tocsr()
    relevant = (relevant - in_train).tocsr()
    relevant.eliminate_zeros()
    has_test = np.diff(relevant.indptr) > 0
    warm = np.diff(train.user_items.indptr) > 0
    scored = has_test & warm if settings.cold_users == "exclude" else has_test
    info = dict(split.info)
    info.update(
        relevance="all" if settings.relevance_threshold is None else f"threshold:{settings.relevance_threshold:g}",
        relevant_pairs=int(relevant.nnz),
        test_pairs_in_train=int(in_train.nnz),
        evaluated_users=int(scored.sum()),
        cold_users_not_scored=int((has_test & ~warm).sum()) if settings.cold_users == "exclude" else 0,
    )
    return PreparedSplit(
        train=train,
        relevant=relevant,
        ratings=build_ratings(split.test, users, items),
        eval_users=np.flatnonzero(scored),
        popularity=metrics.item_popularity(train.user_items),
        info=info,
    )


def score_model(model: Recommender, prepared: PreparedSplit, settings: EvaluationSettings) -> dict[str, float | None]:
    """Fit ``model`` on the split's train part and return its metrics and timings."""
    k = settings.k
    start = time.perf_counter()
    model.fit(prepared.train)
    fit_seconds = time.perf_counter() - start
    users = prepared.eval_users
    start = time.perf_counter()
    if users.size:
        recommended, _ = model.recommend(users, k, exclude_seen=True)
    else:
        recommended = np.full((0, k), -1, dtype=np.int32)
    recommend_seconds = time.perf_counter() - start
    summary = metrics.ranking_summary(
        recommended,
        prepared.relevant[users],
        k,
        n_items=prepared.train.n_items,
        popularity=prepared.popularity,
    )
    out: dict[str, float | None] = {name: value for name, value in summary.items() if name != "users"}
    if settings.rating_metrics:
        out.update(rating_scores(model, prepared.ratings))
    out["fit_seconds"] = fit_seconds
    out["recommend_seconds"] = recommend_seconds
    return out


def rating_scores(model: Recommender, ratings: sp.csr_matrix | None) -> dict[str, float | None]:
    """RMSE and MAE of ``model.predict`` on every test rating; None when the model cannot
    predict ratings or the test set has none."""
    predict = getattr(model, "predict", None)
    if predict is None or ratings is None or ratings.nnz == 0:
        return {"rmse": None, "mae": None}
    pairs = ratings.tocoo()
    predicted = predict(pairs.row.astype(np.int64), pairs.col.astype(np.int64))
    return {"rmse": metrics.rmse(predicted, pairs.data), "mae": metrics.mae(predicted, pairs.data)}


# ----------------------------------------------------------------------------- many models
@dataclass
class EvaluationResult:
    """Everything one evaluation run measured; :meth:`to_dict` is the stable JSON layout."""

    dataset: dict[str, Any]
    split: dict[str, Any]
    k: int
    models: dict[str, dict[str, Any]]
    per_fold: list[dict[str, dict[str, Any]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": self.dataset, "split": self.split, "k": self.k, "models": self.models}
        if len(self.per_fold) > 1:
            out["per_fold"] = self.per_fold
        return json_safe(out)

    def errors(self) -> dict[str, str]:
        """Model name -> error message, for the models that failed."""
        return {name: str(values["error"]) for name, values in self.models.items() if "error" in values}


def json_safe(value: Any) -> Any:
    """NaN/inf become None so the JSON is standard; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _mean_over_folds(results: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        return {"error": errors[0]}
    out: dict[str, Any] = {}
    for key in results[0]:
        values = [r[key] for r in results if r.get(key) is not None]
        out[key] = float(np.mean(values)) if len(values) == len(results) else None
    return out


def dataset_summary(interactions: pd.DataFrame, users: IdMap, items: IdMap, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Sizes of the evaluated data, for reports."""
    return {
        **dict(extra or {}),
        "interactions": int(len(interactions)),
        "users": len(users),
        "items": len(items),
    }


def evaluate(
    interactions: pd.DataFrame,
    models: Mapping[str, ModelFactory] | Sequence[str],
    *,
    catalog: pd.DataFrame | None = None,
    split: SplitSpec | None = None,
    settings: EvaluationSettings | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    dataset_info: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> EvaluationResult:
    """Split ``interactions`` by ``split``, fit every model on train and score it on test.

    ``models`` are registry names (with ``params`` per name) or name -> factory. For kfold the
    metrics are the mean over folds (``per_fold`` holds each fold's). A model that raises a
    RecsysError gets ``{"error": message}`` and the others still run. ``progress``: tqdm bar
    on stderr (None = only when stderr is a terminal).
    """
    split = split or SplitSpec()
    settings = settings or EvaluationSettings()
    factories = model_factories(list(models), params) if not isinstance(models, Mapping) else dict(models)
    if not factories:
        raise ConfigError("no models to evaluate")
    if interactions.empty:
        raise DataError("no interactions to evaluate on")
    users, items = id_maps(interactions, catalog)
    splits = split_data(interactions, split)
    fold_results: list[dict[str, dict[str, Any]]] = []
    fold_infos: list[dict[str, Any]] = []
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    with tqdm(total=len(splits) * len(factories), desc="evaluate", unit="fit", disable=disable, file=sys.stderr) as bar:
        for one in splits:
            prepared = prepare_split(one, users, items, settings, catalog)
            fold_infos.append(prepared.info)
            results: dict[str, dict[str, Any]] = {}
            for name, factory in factories.items():
                bar.set_postfix_str(name + (f" fold {one.info['fold']}" if "fold" in one.info else ""))
                try:
                    results[name] = score_model(factory(), prepared, settings)
                except RecsysError as error:
                    log.warning("%s failed: %s", name, error)
                    results[name] = {"error": str(error)}
                bar.update(1)
            fold_results.append(results)
    combined = {name: _mean_over_folds([fold[name] for fold in fold_results]) for name in factories}
    if len(splits) == 1:
        split_info = fold_infos[0]
    else:
        split_info = {**split.describe(), "per_fold": fold_infos}
    return EvaluationResult(
        dataset=dataset_summary(interactions, users, items, dataset_info),
        split=split_info,
        k=settings.k,
        models=combined,
        per_fold=fold_results,
    )
