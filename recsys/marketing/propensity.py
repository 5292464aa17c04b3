"""Purchase propensity: who is likely to buy a category (or an item) in the next days.

At a cut-off time ``T`` the features of every customer come from the history before ``T``
and the label says whether they bought the target in ``(T, T + horizon]``. Three kinds of
cut-off, oldest first, never overlapping in what they look at:

* training cut-offs ``T_eval - j * horizon`` for j = 1..``train_cutoffs``: stacked, they
  train scikit-learn's ``LogisticRegression``; the regularisation ``C`` is chosen by
  fitting on all but the newest of them and scoring AUC on the newest (a rolling-origin
  validation that never sees the evaluated window);
* the evaluation cut-off ``T_eval = end - horizon``: AUC, precision@k and lift@k of the
  model against a recency-frequency baseline, on customers and labels it was not fitted on;
* the audience: the model refitted with the evaluation window added, scoring every
  customer at the end of the log.

The baseline ranks customers by how many target purchases they made, then by how recently
they bought anything: what a marketer does without a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.data import schema
from recsys.errors import ConfigError, DataError
from recsys.marketing.features import DAY, Purchases, customer_features

TargetKind = Literal["category", "item", "title"]
RECENT_DAYS = 30.0
NEVER_DAYS = 3650.0  # "days since" for a customer who never did the thing


class PropensityConfig(BaseModel):
    """``recsys propensity`` settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(..., description="category=NAME, item=ID or title=WORD (items whose title contains WORD)")
    horizon_days: float = Field(14.0, gt=0, description="how far ahead a purchase counts")
    train_cutoffs: int = Field(3, ge=1, le=24, description="earlier cut-offs stacked for training")
    c_grid: tuple[float, ...] = Field((0.01, 0.1, 1.0, 10.0), min_length=1, description="inverse regularisation strengths tried")
    k: int = Field(100, ge=1, description="audience size and the k of precision@k and lift@k")
    seed: int = 0

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        parse_target(value)
        return value

    @field_validator("c_grid")
    @classmethod
    def _positive(cls, grid: tuple[float, ...]) -> tuple[float, ...]:
        if any(c <= 0 for c in grid):
            raise ValueError(f"every C must be > 0, got {grid}")
        return grid


def parse_target(target: str) -> tuple[TargetKind, str]:
    """``"category=coffee"`` -> ("category", "coffee"); a ConfigError names what is allowed."""
    kind, sep, name = target.partition("=")
    kind = kind.strip().lower()
    if not sep or not name.strip() or kind not in ("category", "item", "title"):
        raise ConfigError(f"--target: expected category=NAME, item=ID or title=WORD, got {target!r}")
    return kind, name.strip()  # type: ignore[return-value]


def target_mask(purchases: Purchases, target: str, catalog: pd.DataFrame | None) -> np.ndarray:
    """Which purchase lines are of the target (boolean, one per line)."""
    kind, name = parse_target(target)
    lines = purchases.lines
    if kind == "item":
        mask = lines[schema.ITEM_ID].to_numpy() == name
        what = f"item {name!r}"
    elif kind == "category":
        mask = lines[schema.CATEGORY].to_numpy() == name
        if not (lines[schema.CATEGORY] != "").any():
            raise DataError("--target category=...: the data has no item categories (map a catalogue category column)")
        what = f"category {name!r}"
    else:
        if catalog is None or schema.TITLE not in catalog:
            raise DataError("--target title=...: the data has no item titles")
        titles = catalog.drop_duplicates(schema.ITEM_ID, keep="last")
        hit = titles[schema.TITLE].astype("string").fillna("").str.contains(name, case=False, regex=False)
        chosen = set(titles.loc[hit.to_numpy(dtype=bool), schema.ITEM_ID].astype(str))
        mask = lines[schema.ITEM_ID].isin(chosen).to_numpy()
        what = f"items whose title contains {name!r}"
    if not mask.any():
        raise DataError(f"--target {target}: no purchase of {what} in the data")
    return mask


def propensity_features(purchases: Purchases, is_target: np.ndarray, events: pd.DataFrame, cutoff: float) -> pd.DataFrame:
    """Features at ``cutoff`` for every customer with any event before it."""
    before = events[events[schema.TIMESTAMP] < cutoff]
    customers = pd.Index(np.unique(before[schema.USER_ID].astype(str).to_numpy()), name=schema.USER_ID)
    rfm = customer_features(purchases, cutoff).reindex(customers)
    out = pd.DataFrame(index=customers)
    out["bought_before"] = rfm["frequency"].notna().astype(np.float64)
    out["recency_days"] = rfm["recency_days"].fillna(NEVER_DAYS)
    for column in ("frequency", "monetary", "lines", "avg_order_value"):
        out[column] = rfm[column].fillna(0.0)
    out["tenure_days"] = rfm["tenure_days"].fillna(0.0)

    lines = purchases.lines
    past = (lines[schema.TIMESTAMP] < cutoff).to_numpy()
    target_lines = lines.loc[past & is_target]
    grouped = target_lines.groupby(schema.USER_ID)
    out["target_lines"] = grouped.size().reindex(customers).fillna(0.0).astype(np.float64)
    out["target_days_since"] = ((cutoff - grouped[schema.TIMESTAMP].max()) / DAY).reindex(customers).fillna(NEVER_DAYS)
    out["target_share"] = (out["target_lines"] / out["lines"].where(out["lines"] > 0)).fillna(0.0)
    recent = target_lines[target_lines[schema.TIMESTAMP] >= cutoff - RECENT_DAYS * DAY]
    out["target_lines_30d"] = recent.groupby(schema.USER_ID).size().reindex(customers).fillna(0.0).astype(np.float64)

    event_groups = before.groupby(before[schema.USER_ID].astype(str))
    out["events"] = event_groups.size().reindex(customers).astype(np.float64)
    out["events_30d"] = (
        before[before[schema.TIMESTAMP] >= cutoff - RECENT_DAYS * DAY]
        .groupby(schema.USER_ID)
        .size()
        .reindex(customers)
        .fillna(0.0)
        .astype(np.float64)
    )
    out["last_event_days"] = ((cutoff - event_groups[schema.TIMESTAMP].max()) / DAY).reindex(customers)
    target_items = set(lines.loc[is_target, schema.ITEM_ID])
    browsing = before[before[schema.ITEM_ID].astype(str).isin(target_items)]
    out["target_events"] = browsing.groupby(schema.USER_ID).size().reindex(customers).fillna(0.0).astype(np.float64)
    return out


def labels_after(purchases: Purchases, is_target: np.ndarray, customers: pd.Index, cutoff: float, horizon: float) -> np.ndarray:
    """1 where the customer bought the target in (cutoff, cutoff + horizon]."""
    lines = purchases.lines
    times = lines[schema.TIMESTAMP].to_numpy()
    window = is_target & (times > cutoff) & (times <= cutoff + horizon)
    buyers = set(lines.loc[window, schema.USER_ID])
    return customers.isin(buyers).astype(np.int8)


def baseline_scores(features: pd.DataFrame) -> np.ndarray:
    """Recency-frequency baseline: target purchases first, then recency of any purchase.

    The recency term lies in (0, 1], so it only orders customers with equal target counts;
    equal pairs get equal scores (ties are not broken by row order).
    """
    recency = np.clip(features["recency_days"].to_numpy(dtype=np.float64), 0.0, NEVER_DAYS)
    return features["target_lines"].to_numpy(dtype=np.float64) + 1.0 - recency / (NEVER_DAYS + 1.0)


def ranking_metrics(labels: np.ndarray, scores: np.ndarray, k: int) -> dict[str, float]:
    """AUC, precision@k, lift@k (precision@k over the base rate), base rate."""
    from sklearn.metrics import roc_auc_score

    base = float(labels.mean()) if len(labels) else 0.0
    k = min(k, len(labels))
    top = np.argsort(-scores, kind="stable")[:k]
    precision = float(labels[top].mean()) if k else 0.0
    both = 0 < labels.sum() < len(labels)
    return {
        "auc": float(roc_auc_score(labels, scores)) if both else float("nan"),
        "precision_at_k": precision,
        "lift_at_k": precision / base if base > 0 else float("nan"),
        "base_rate": base,
        "positives": int(labels.sum()),
        "customers": int(len(labels)),
    }


@dataclass
class PropensityResult:
    """What ``propensity`` found; ``audience`` is the top-k customers at the end of the log."""

    config: PropensityConfig
    cutoffs: dict[str, Any]
    chosen_c: float
    validation: dict[str, float]
    model: dict[str, float]
    baseline: dict[str, float]
    coefficients: dict[str, float]
    audience: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.config.target,
            "horizon_days": self.config.horizon_days,
            "k": self.config.k,
            "cutoffs": self.cutoffs,
            "chosen_c": self.chosen_c,
            "validation_auc_by_c": self.validation,
            "model": _rounded(self.model),
            "baseline": _rounded(self.baseline),
            "coefficients": _rounded(self.coefficients),
            "audience": [
                {"user_id": u, "score": round(float(s), 6)} for u, s in zip(self.audience[schema.USER_ID], self.audience["score"])
            ],
            **self.info,
        }


def _rounded(values: dict[str, float]) -> dict[str, float | int | None]:
    """JSON-ready metrics: counts stay integers, NaN (undefined AUC or lift) becomes null."""
    out: dict[str, float | int | None] = {}
    for key, value in values.items():
        if isinstance(value, (int, np.integer)):
            out[key] = int(value)
        else:
            out[key] = round(float(value), 4) if np.isfinite(value) else None
    return out


def _pipeline(c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return make_pipeline(
        FunctionTransformer(np.log1p),
        StandardScaler(),
        LogisticRegression(C=c, max_iter=2000, random_state=seed),
    )


def fit_propensity(
    purchases: Purchases,
    events: pd.DataFrame,
    config: PropensityConfig,
    catalog: pd.DataFrame | None = None,
) -> PropensityResult:
    """Choose C on earlier cut-offs, evaluate on the last full horizon, score the audience.

    ``events`` is every interaction (views, carts, purchases) with user_id, item_id and
    timestamp: browsing is a feature even when only purchases are labels.
    """
    is_target = target_mask(purchases, config.target, catalog)
    horizon = config.horizon_days * DAY
    end = purchases.end
    evaluation_cutoff = end - horizon
    train_cutoffs = [evaluation_cutoff - j * horizon for j in range(config.train_cutoffs, 0, -1)]
    if train_cutoffs[0] <= purchases.start:
        raise DataError(
            f"the log spans {(end - purchases.start) / DAY:.0f} days: too short for {config.train_cutoffs} training "
            f"cut-offs and an evaluation window of {config.horizon_days:g} days each (lower --horizon or train_cutoffs)"
        )
    sets = []
    for cutoff in [*train_cutoffs, evaluation_cutoff]:
        features = propensity_features(purchases, is_target, events, cutoff)
        sets.append((features, labels_after(purchases, is_target, features.index, cutoff, horizon)))
    *training, (eval_features, eval_labels) = sets
    if sum(int(y.sum()) for _, y in training) == 0:
        raise DataError(f"--target {config.target}: nobody bought it in the training windows; nothing to learn")

    def stack(parts: list[tuple[pd.DataFrame, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        return np.vstack([f.to_numpy(dtype=np.float64) for f, _ in parts]), np.concatenate([y for _, y in parts])

    validation: dict[str, float] = {}
    if len(training) >= 2 and 0 < training[-1][1].sum() < len(training[-1][1]):
        x_fit, y_fit = stack(training[:-1])
        x_val, y_val = stack(training[-1:])
        if 0 < y_fit.sum() < len(y_fit):
            from sklearn.metrics import roc_auc_score

            for c in config.c_grid:
                model = _pipeline(c, config.seed).fit(x_fit, y_fit)
                validation[str(c)] = float(roc_auc_score(y_val, model.predict_proba(x_val)[:, 1]))
    chosen_c = float(max(validation, key=lambda c: (validation[c], -float(c)))) if validation else 1.0

    x_train, y_train = stack(training)
    model = _pipeline(chosen_c, config.seed).fit(x_train, y_train)
    model_scores = model.predict_proba(eval_features.to_numpy(dtype=np.float64))[:, 1]
    model_metrics = ranking_metrics(eval_labels, model_scores, config.k)
    baseline_metrics = ranking_metrics(eval_labels, baseline_scores(eval_features), config.k)

    # The audience: refit with the evaluated window added, score everyone at the end.
    x_all, y_all = stack(sets)
    final = _pipeline(chosen_c, config.seed).fit(x_all, y_all)
    now_features = propensity_features(purchases, is_target, events, end + 1.0)
    now_scores = final.predict_proba(now_features.to_numpy(dtype=np.float64))[:, 1]
    top = np.argsort(-now_scores, kind="stable")[: config.k]
    audience = pd.DataFrame({schema.USER_ID: now_features.index.to_numpy()[top].astype(str), "score": now_scores[top]})
    coefficients = dict(zip(eval_features.columns, final[-1].coef_[0].tolist()))
    iso = lambda t: pd.Timestamp(t, unit="s").isoformat()  # noqa: E731
    return PropensityResult(
        config=config,
        cutoffs={"train": [iso(t) for t in train_cutoffs], "evaluation": iso(evaluation_cutoff), "end": iso(end)},
        chosen_c=chosen_c,
        validation=validation,
        model=model_metrics,
        baseline=baseline_metrics,
        coefficients=coefficients,
        audience=audience,
        info={"training_rows": int(len(y_train)), "training_positives": int(y_train.sum())},
    )
