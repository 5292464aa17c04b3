"""The served model, chosen on a temporal holdout of the shop's own data (``[selection]``).

Before the models are fitted on all data, every candidate (the configured models with user
lists, and ``popular`` always) is fitted on the older part of the interactions and scored on
the newest part with the evaluation code (:func:`recsys.evaluation.runner.prepare_split` and
:func:`~recsys.evaluation.runner.score_model`). The best candidate becomes the default model
the API serves; since popular is among them, the served model never scores below popular on
that holdout. Rule for ties (equal metric values): popular wins, then the model configured
first. With ``budget_seconds`` each model also tries its small grid
(:data:`recsys.evaluation.tuning.SMALL_GRIDS`) within its share of the budget; a model whose
grid configuration beats its configured parameters on the holdout is fitted on all data with
that configuration.

On a large shop the candidates are fitted on a seeded sample of ``max_fit_users`` users
(the scored ones first) and scored on at most ``max_users`` of them: the holdout fits cost a
fraction of the final ones, which use every user.

A candidate whose holdout fit fails (non-finite factors, no list at all) fails the run under
``data.validation = "strict"`` and is dropped with a warning naming the cause under
``"lenient"``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys.data import schema
from recsys.data.idmap import IdMap
from recsys.errors import ModelError, RecsysError
from recsys.models.base import ModelConfig
from recsys.models.registry import get_model_class
from recsys.pipeline.config import AUTO, PipelineConfig

log = logging.getLogger(__name__)

POPULAR = "popular"


@dataclass
class Candidate:
    """One row of the selection table: a model's best configuration on the holdout."""

    model: str
    value: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float | None = None
    tried: int = 0
    chosen: bool = False
    why: str = ""
    error: str | None = None
    tuned: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "value": self.value,
            "params": self.params,
            "fit_seconds": None if self.fit_seconds is None else round(self.fit_seconds, 4),
            "configurations_tried": self.tried,
            "tuned": self.tuned,
            "chosen": self.chosen,
            "why": self.why,
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class Selection:
    """What the training run does after selection: which models it fits on all data, with
    which configurations, which one it serves, and the table that says why."""

    default_model: str | None
    reason: str
    model_configs: dict[str, ModelConfig]
    fitted_names: list[str]
    user_models: list[str]
    similar_models: list[str]
    skipped: dict[str, str]
    metric: str = ""
    holdout: dict[str, Any] = field(default_factory=dict)
    rows: list[Candidate] = field(default_factory=list)
    enabled: bool = True
    higher_is_better: bool = True

    def ranking(self) -> list[str]:
        """Scored candidates, best first (the tie rule applied), for falling back."""
        sign = -1.0 if self.higher_is_better else 1.0
        scored = [(i, row) for i, row in enumerate(self.rows) if row.value is not None]
        return [row.model for _, row in sorted(scored, key=lambda pair: (sign * pair[1].value, pair[0]))]  # type: ignore[operator]

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "metric": self.metric,
            "holdout": self.holdout,
            "default_model": self.default_model,
            "reason": self.reason,
            "tie_rule": "equal values: popular, then the model configured first",
            "candidates": [row.to_json() for row in self.rows],
        }


def holdout_cut(timestamps: np.ndarray, fraction: float | None, days: float | None) -> int:
    """The unix time where the holdout begins: the newest ``fraction`` of the rows and/or the
    last ``days`` days before the newest event; both given, the later cut (smaller holdout)."""
    from recsys.evaluation.splits import temporal_cut

    cuts = []
    if fraction is not None:
        cuts.append(temporal_cut(pd.DataFrame({schema.TIMESTAMP: timestamps}), fraction))
    if days is not None:
        cuts.append(int(np.nanmax(timestamps) - days * 86400))
    return max(cuts)


def select_served_model(
    config: PipelineConfig,
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None,
    model_configs: dict[str, ModelConfig],
    fitted_names: list[str],
    user_models: list[str],
    similar_models: list[str],
    default_model: str | None,
    skipped: dict[str, str],
) -> Selection:
    """Score the candidates on the holdout and decide what the run fits and serves."""
    settings = config.selection
    plan = Selection(
        default_model=default_model,
        reason="",
        model_configs=dict(model_configs),
        fitted_names=list(fitted_names),
        user_models=list(user_models),
        similar_models=list(similar_models),
        skipped=dict(skipped),
        metric=settings.metric,
        enabled=settings.enabled,
    )
    explicit = config.publish.default_model not in (None, AUTO)
    if not settings.enabled:
        plan.reason = (
            "set by publish.default_model (selection.enabled = false)"
            if explicit
            else "the first user model (selection.enabled = false)"
        )
        return plan

    wanted = settings.candidates if settings.candidates is not None else user_models
    names = [POPULAR] + [m for m in wanted if m != POPULAR]
    for name in names:
        if name in skipped:
            plan.rows.append(Candidate(name, why=f"skipped: {skipped[name]}"))
    names = [m for m in names if m not in skipped]
    if POPULAR not in plan.model_configs:
        plan.model_configs[POPULAR] = get_model_class(POPULAR).parse_config({})

    prepared, plan.holdout, problem = _prepare_holdout(config, interactions, catalog)
    if prepared is None:
        plan.reason = f"not selected: {problem}; serving " + ("publish.default_model" if explicit else "the first user model")
        log.warning("model selection: %s", problem)
        plan.rows.extend(Candidate(name, why=problem) for name in names)
        return plan

    from recsys.evaluation.runner import EvaluationSettings
    from recsys.evaluation.tuning import SMALL_GRIDS, parse_metric

    _, k, higher_is_better = parse_metric(settings.metric)
    plan.higher_is_better = higher_is_better
    scoring = EvaluationSettings(k=k or 10, weighting=config.weighting)
    share = (settings.budget_seconds or 0.0) / max(1, len(names))
    strict = config.data.validation == "strict"
    scored: list[Candidate] = []
    for name in names:
        base = plan.model_configs[name].model_dump()
        row = _score(name, base, prepared, scoring, settings.metric)
        row.params = dict(config.models.get(name, {}))
        if row.error is not None:
            cause = f"{name}: failed on the selection holdout: {row.error}"
            if strict:
                raise ModelError(f"{cause} (strict validation; data.validation = \"lenient\" drops the model instead)")
            log.warning("dropping model %s: %s", name, row.error)
            row.why = f"dropped: {row.error}"
            plan.rows.append(row)
            if name != POPULAR or name in plan.fitted_names:
                _drop(plan, name, f"failed on the selection holdout: {row.error}")
            continue
        spent = row.fit_seconds or 0.0
        for overrides in SMALL_GRIDS.get(name, []) if share > 0 else []:
            if spent + (row.fit_seconds or 0.0) > share:
                break
            params = {**base, **overrides}
            if params == base:
                continue
            trial = _score(name, params, prepared, scoring, settings.metric)
            spent += trial.fit_seconds or 0.0
            row.tried += 1
            if trial.value is not None and row.value is not None and _better(trial.value, row.value, higher_is_better):
                row.value, row.tuned = trial.value, True
                row.params = {**config.models.get(name, {}), **overrides}
        if row.tuned:
            plan.model_configs[name] = get_model_class(name).parse_config({**base, **row.params})
            log.info("selection: %s is fitted with %s (better on the holdout than its configuration)", name, row.params)
        plan.rows.append(row)
        scored.append(row)

    if not scored:
        plan.reason = "not selected: every candidate failed on the holdout"
        return plan
    # Ties: popular first, then configuration order (the order of `scored`).
    winner = scored[0]
    for row in scored[1:]:
        if _better(row.value, winner.value, higher_is_better):  # type: ignore[arg-type]
            winner = row
    popular = next((row for row in scored if row.model == POPULAR), None)
    for row in scored:
        row.why = _why(row, winner, popular, higher_is_better)
    if explicit:
        chosen = config.publish.default_model
        plan.reason = f"set by publish.default_model; the holdout's best is {winner.model}"
        chosen_row = next((row for row in scored if row.model == chosen), None)
        if chosen_row is not None and popular is not None and _better(popular.value, chosen_row.value, higher_is_better):  # type: ignore[arg-type]
            log.warning(
                "publish.default_model = %r scores %s %.4f on the holdout, below popular's %.4f "
                "(set publish.default_model = \"auto\" to serve the best model)",
                chosen, settings.metric, chosen_row.value, popular.value,
            )
        winner = chosen_row or winner
    else:
        plan.default_model = winner.model
        plan.reason = f"best {settings.metric} on the holdout ({winner.value:.4f})" + (
            f", popular {popular.value:.4f}" if popular is not None and winner is not popular else ""
        )
    winner.chosen = winner.model == plan.default_model
    if plan.default_model == POPULAR:
        if POPULAR not in plan.fitted_names:
            plan.fitted_names.append(POPULAR)
        if POPULAR not in plan.user_models:
            plan.user_models.append(POPULAR)
    return plan


def _prepare_holdout(
    config: PipelineConfig, interactions: pd.DataFrame, catalog: pd.DataFrame | None
) -> tuple[Any, dict[str, Any], str]:
    """(prepared split or None, holdout description, why not when None)."""
    from recsys.evaluation.runner import EvaluationSettings, id_maps, prepare_split
    from recsys.evaluation.splits import SplitSpec, split_data

    settings = config.selection
    timestamps = (
        pd.to_numeric(interactions[schema.TIMESTAMP], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if schema.TIMESTAMP in interactions
        else np.full(len(interactions), np.nan)
    )
    if np.isnan(timestamps).any():
        # Without times there is no "newest part": a seeded random share of each user's items.
        spec = SplitSpec(method="stratified", test_size=settings.holdout_fraction or 0.2, seed=42)
    else:
        spec = SplitSpec(method="temporal", cut=holdout_cut(timestamps, settings.holdout_fraction, settings.holdout_days))
    try:
        split = split_data(interactions, spec)[0]
    except RecsysError as error:
        return None, spec.describe(), str(error)
    users, items = id_maps(interactions, catalog)
    split, fit_users = _sample_fit_users(split, settings.max_fit_users)
    if fit_users is not None:
        # The candidates' matrices hold the sampled users only; items stay those of the data.
        users = IdMap.from_values(split.train[schema.USER_ID])
    prepared = prepare_split(split, users, items, EvaluationSettings(weighting=config.weighting), catalog)
    holdout = {
        key: prepared.info[key]
        for key in ("method", "cut", "train_rows", "test_rows", "evaluated_users", "cold_users_not_scored")
        if key in prepared.info
    }
    if fit_users is not None:
        holdout.update(fit_users=fit_users, fit_rows=len(split.train), training_users=split.info["training_users"])
    if settings.max_users is not None and prepared.eval_users.size > settings.max_users:
        # A seeded sample of the holdout's users: the comparison's standard error shrinks as
        # 1/sqrt(users) while scoring every user costs as much as the lists themselves.
        sample = np.random.default_rng(0).choice(prepared.eval_users, size=settings.max_users, replace=False)
        holdout["holdout_users"] = int(prepared.eval_users.size)
        prepared = dataclasses.replace(prepared, eval_users=np.sort(sample))
        holdout["evaluated_users"] = settings.max_users
    if prepared.eval_users.size == 0:
        return None, holdout, f"the holdout ({split.info['test_rows']} rows) has no user with earlier history to score"
    return prepared, holdout, ""


def _sample_fit_users(split: Any, max_fit_users: int | None) -> tuple[Any, int | None]:
    """(split, number of users fitted) restricted to a seeded sample of at most
    ``max_fit_users`` of its training users, or (split, None) when there are not more.

    The sample holds first users with both training and holdout rows (the ones that can be
    scored, of which ``max_users`` are), then other training users, so that the holdout keeps
    as many users to score as it can. Candidates fitted on 50,000 users instead
    of 300,000 cost about a sixth: the fit cost follows the rows.
    """
    train_users = pd.Index(pd.unique(split.train[schema.USER_ID]))
    if max_fit_users is None or len(train_users) <= max_fit_users:
        return split, None
    rng = np.random.default_rng(0)
    scorable = train_users.isin(pd.unique(split.test[schema.USER_ID]))
    # Positions into train_users: a seeded order of the scorable users, then of the others.
    scored = rng.permutation(np.flatnonzero(scorable))[:max_fit_users]
    others = rng.permutation(np.flatnonzero(~scorable))[: max_fit_users - len(scored)]
    chosen = train_users[np.concatenate([scored, others])]
    train = split.train[split.train[schema.USER_ID].isin(chosen)]
    test = split.test[split.test[schema.USER_ID].isin(chosen)]
    info = {**split.info, "training_users": int(len(train_users))}
    return dataclasses.replace(split, train=train, test=test, info=info), len(chosen)


def _score(name: str, params: dict[str, Any], prepared: Any, scoring: Any, metric: str) -> Candidate:
    """One fit on the older part, scored on the holdout; errors become ``Candidate.error``."""
    from recsys.evaluation.runner import score_model

    started = time.perf_counter()
    try:
        model = get_model_class(name)(params)
        scores = score_model(model, prepared, scoring)
    except RecsysError as error:
        return Candidate(name, fit_seconds=time.perf_counter() - started, error=str(error), tried=1)
    coverage = scores.get(f"coverage@{scoring.k}")
    if coverage is not None and coverage == 0:
        hint = getattr(model, "empty_hint", "")
        return Candidate(
            name,
            fit_seconds=scores["fit_seconds"],
            error="recommends no item to any user" + (f" ({hint})" if hint else ""),
            tried=1,
        )
    value = scores.get(metric)
    if value is None or not math.isfinite(value):
        return Candidate(name, fit_seconds=scores["fit_seconds"], error=f"{metric} is not a finite number", tried=1)
    return Candidate(name, value=float(value), fit_seconds=float(scores["fit_seconds"]), tried=1)


def _better(value: float, than: float, higher_is_better: bool) -> bool:
    return value > than if higher_is_better else value < than


def _why(row: Candidate, winner: Candidate, popular: Candidate | None, higher_is_better: bool) -> str:
    assert row.value is not None and winner.value is not None
    if row is winner:
        if popular is None or row is popular:
            return "best on the holdout" + (" (no candidate beat popular)" if row is popular else "")
        return f"best on the holdout, {row.value - popular.value:+.4f} over popular"  # type: ignore[operator]
    if row.value == winner.value:
        return f"tied with {winner.model} (ties: popular, then configuration order)"
    why = f"{row.value - winner.value:+.4f} vs {winner.model}"
    if popular is not None and row is not popular and _better(popular.value, row.value, higher_is_better):  # type: ignore[arg-type]
        why += "; loses to popular"
    return why


def _drop(plan: Selection, name: str, reason: str) -> None:
    plan.skipped[name] = reason
    plan.fitted_names = [m for m in plan.fitted_names if m != name]
    plan.user_models = [m for m in plan.user_models if m != name]
    plan.similar_models = [m for m in plan.similar_models if m != name]
    if plan.default_model == name:
        plan.default_model = plan.user_models[0] if plan.user_models else None


def check_lists(entries: list[dict[str, Any]], plan: Selection, *, strict: bool) -> tuple[list[dict[str, Any]], str | None]:
    """(list entries kept, default model) after dropping every model all of whose lists are
    empty; under strict validation such a model fails the run instead.

    ``entries`` are the run's list entries (``kind``, ``model``, ``rows`` = lists written); the
    bought-together lists are the rules model's. A dropped default model is replaced by the
    next best of the selection table, else the first user model left.
    """
    by_model: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        model = entry.get("model") or ("rules" if entry["kind"] == "together" else None)
        if model is not None:
            by_model.setdefault(model, []).append(entry)
    dropped: set[str] = set()
    for model, own in by_model.items():
        if any(entry.get("non_empty", entry["rows"]) for entry in own):
            continue
        hint = get_model_class(model).empty_hint or f"check its parameters under [models.{model}] and the data it needs"
        kinds = ", ".join(sorted({entry["kind"] for entry in own}))
        message = f"{model}: produced no list at all (every {kinds} list is empty): {hint}"
        if strict:
            raise ModelError(f"{message} (strict validation; data.validation = \"lenient\" drops the model instead)")
        log.warning("dropping model %s: %s", model, message)
        plan.skipped[model] = f"produced no list at all: {hint}"
        dropped.add(model)
    if not dropped:
        return entries, plan.default_model
    kept = [e for e in entries if (e.get("model") or ("rules" if e["kind"] == "together" else None)) not in dropped]
    default = plan.default_model
    if default in dropped:
        users = [e["model"] for e in kept if e["kind"] == "user"]
        default = next((m for m in plan.ranking() if m in users), users[0] if users else None)
        log.warning("default model %s produced no list; serving %s instead", plan.default_model, default)
        plan.reason = f"{plan.default_model} produced no list; next best: {default}"
        for row in plan.rows:
            row.chosen = row.model == default
        plan.default_model = default
    return kept, default
