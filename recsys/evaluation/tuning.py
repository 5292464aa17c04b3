"""Grid search of a model's parameters on a validation split carved from the training part.

The data is split into train/test exactly as ``evaluate`` splits it; the train part is split
again, the same way, into train'/validation. Every configuration is fitted on train' and
scored on validation; the test part is touched only by the optional final refit of the
best configuration on the whole train part. Every figure is labelled with its split.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from recsys.errors import ConfigError, DataError, RecsysError
from recsys.evaluation.metrics import BEYOND_ACCURACY_METRICS, LOWER_IS_BETTER, RANKING_METRICS, RATING_METRICS
from recsys.evaluation.runner import (
    EvaluationSettings,
    json_safe,
    dataset_summary,
    id_maps,
    prepare_split,
    score_model,
)
from recsys.evaluation.splits import SplitSpec, split_data
from recsys.models.registry import create_model


# Small grids per model: a few values around each default of the parameters that matter
# most, for a quick search on a shop's own data (``[selection] budget_seconds``) and for
# checking that the defaults hold across data sets (benchmarks/bench_defaults.py). Each is
# a list of partial configurations tried on top of the configured parameters.
SMALL_GRIDS: dict[str, list[dict[str, Any]]] = {
    "popular": [{"trending_weight": 0.0}, {"mode": "weight"}, {"mode": "trending"}],
    "itemknn": [{"similarity": "cosine"}, {"k": 25}, {"k": 300}, {"k1": 1.2, "b": 0.75}],
    "userknn": [{"k": 25}, {"k": 300}, {"shrinkage": 10.0}],
    "als": [
        {"weighting": "bm25"},
        {"weighting": "none", "regularization": 1.0},
        {"regularization": 5.0},
        {"regularization": 200.0},
        {"factors": 32},
    ],
    "bpr": [{"learning_rate": 0.05}, {"regularization": 0.01}, {"factors": 128}],
    "ease": [{"l2": 50.0}, {"l2": 150.0}, {"l2": 1000.0}],
    "svd": [{"n_factors": 20}, {"reg_all": 0.1}],
    "rules": [{"rank_by": "lift"}, {"combine": "max"}],
    "content": [],
    "blend": [{"method": "rrf"}],
}


def parse_value(text: str) -> Any:
    """A parameter value from the command line: JSON (``64``, ``0.1``, ``true``, ``[1, 5]``,
    ``null``) when it parses, else the text itself (``users``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_values(text: str) -> list[Any]:
    """Comma-separated candidate values: ``32,64,128`` -> [32, 64, 128]; ``users,weight`` ->
    ["users", "weight"]; JSON lists stay whole (``[1,5],[0,10]``)."""
    try:
        values = json.loads(f"[{text}]")
    except json.JSONDecodeError:
        values = [part.strip() for part in text.split(",")]
    if not values or any(v == "" for v in values):
        raise ConfigError(f"empty value in {text!r}")
    return values


def parse_assignment(text: str) -> tuple[str, str]:
    """``name=value`` -> (name, value text); ConfigError naming the text otherwise."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ConfigError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def parse_metric(metric: str) -> tuple[str, int | None, bool]:
    """``"ndcg@10"`` -> ("ndcg", 10, higher_is_better); ``"rmse"`` -> ("rmse", None, False)."""
    base, _, k_text = metric.partition("@")
    allowed = (*RANKING_METRICS, *BEYOND_ACCURACY_METRICS, *RATING_METRICS)
    if base not in allowed:
        raise ConfigError(f"unknown metric {metric!r} (available: {', '.join(allowed)}; ranking ones as name@k)")
    if base in RATING_METRICS:
        if k_text:
            raise ConfigError(f"{base} takes no @k, got {metric!r}")
        return base, None, False
    if not k_text.isdigit() or int(k_text) < 1:
        raise ConfigError(f"metric {metric!r} needs a cut-off, like {base}@10")
    return base, int(k_text), base not in LOWER_IS_BETTER


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in order (last parameter varies fastest)."""
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ConfigError(f"grid parameter {name!r} needs a non-empty list of values, got {values!r}")
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(grid[n] for n in names))]


@dataclass
class TuningResult:
    """Outcome of :func:`tune`.

    ``trials``: one entry per configuration, ``{"params", "validation": metrics}`` or
    ``{"params", "error"}``; ``best_params`` and ``best_value`` come from the validation
    split; ``test`` (only with ``final``) holds the best configuration refitted on the whole
    train part and scored on the test part.
    """

    model: str
    metric: str
    dataset: dict[str, Any]
    split: dict[str, Any]
    validation_split: dict[str, Any]
    trials: list[dict[str, Any]]
    best_params: dict[str, Any] | None
    best_value: float | None
    test: dict[str, Any] | None = None
    base_params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "model": self.model,
                "metric": self.metric,
                "base_params": self.base_params,
                "dataset": self.dataset,
                "split": self.split,
                "validation_split": self.validation_split,
                "trials": self.trials,
                "best": {"params": self.best_params, "validation": {self.metric: self.best_value}},
                "test": self.test,
            }
        )


def tune(
    model_name: str,
    grid: Mapping[str, Sequence[Any]],
    data: pd.DataFrame,
    metric: str = "ndcg@10",
    *,
    catalog: pd.DataFrame | None = None,
    split: SplitSpec | None = None,
    settings: EvaluationSettings | None = None,
    base_params: Mapping[str, Any] | None = None,
    final: bool = False,
    dataset_info: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> TuningResult:
    """Grid-search ``model_name`` on a validation split of the training part.

    Args:
        grid: parameter name -> candidate values; configurations are the product.
        data: interactions table (schema columns).
        metric: what to optimise, ``"ndcg@10"``-style or ``"rmse"``/``"mae"`` (lower is better).
        split: how to split (stratified/temporal/leave-last; kfold is not a holdout). A given
            temporal ``cut`` applies to train/test; validation is cut at the same quantile
            of the train part.
        settings: relevance, cold users, weighting; its ``k`` is replaced by the metric's.
        base_params: fixed parameters under every configuration.
        final: refit the best configuration on the whole train part and score it on test.
    """
    split = split or SplitSpec()
    if split.method == "kfold":
        raise ConfigError("tune needs a holdout split (stratified, temporal or leave-last), not kfold")
    base, k, higher_is_better = parse_metric(metric)
    settings = (settings or EvaluationSettings()).model_copy(
        update={"k": k if k is not None else (settings.k if settings else 10), "rating_metrics": base in RATING_METRICS}
    )
    configs = [{**dict(base_params or {}), **combo} for combo in expand_grid(grid)]
    for config in configs:
        create_model(model_name, config)  # ConfigError now, not after minutes of fitting
    if data.empty:
        raise DataError("no interactions to tune on")

    users, items = id_maps(data, catalog)
    outer = split_data(data, split)[0]
    inner_spec = split.model_copy(update={"cut": None})
    try:
        inner = split_data(outer.train, inner_spec)[0]
    except DataError as error:
        raise DataError(f"validation split of the training part: {error}") from None
    validation = prepare_split(inner, users, items, settings, catalog)
    if validation.eval_users.size == 0 and base not in RATING_METRICS:
        raise DataError("the validation split has no users to score (too little data per user?)")

    trials: list[dict[str, Any]] = []
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    for config in tqdm(configs, desc=f"tune {model_name}", unit="config", disable=disable, file=sys.stderr):
        combo = {name: config[name] for name in grid}
        try:
            scores = score_model(create_model(model_name, config), validation, settings)
        except RecsysError as error:
            trials.append({"params": combo, "error": str(error)})
            continue
        trials.append({"params": combo, "validation": scores})

    def objective(trial: dict[str, Any]) -> float:
        value = trial.get("validation", {}).get(metric)
        if value is None or not math.isfinite(value):
            return -math.inf
        return value if higher_is_better else -value

    scored = [t for t in trials if objective(t) > -math.inf]
    best = max(scored, key=objective) if scored else None
    test = None
    outer_info = dict(outer.info)
    if final and best is not None:
        prepared = prepare_split(outer, users, items, settings, catalog)
        outer_info = prepared.info
        model = create_model(model_name, {**dict(base_params or {}), **best["params"]})
        test = {"params": best["params"], "metrics": score_model(model, prepared, settings)}
    return TuningResult(
        model=model_name,
        metric=metric,
        dataset=dataset_summary(data, users, items, dataset_info),
        split=outer_info,
        validation_split=validation.info,
        trials=trials,
        best_params=best["params"] if best else None,
        best_value=best["validation"][metric] if best else None,
        test=test,
        base_params=dict(base_params or {}),
    )
