"""Optional holdout evaluation of a run (``[evaluation] enabled = true``).

Each trained model is fitted once more on a train split and scored on the held-out part
with :func:`recsys.evaluation.runner.evaluate`; the metrics go into the run's metadata.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from recsys.pipeline.config import PipelineConfig


def evaluate_holdout(
    config: PipelineConfig, interactions: pd.DataFrame, catalog: pd.DataFrame | None, models: list[str]
) -> dict[str, Any]:
    """``{"split": {...}, "k": k, "models": {name: {metric: value}}}`` for ``models``."""
    from recsys.evaluation.runner import EvaluationSettings, evaluate
    from recsys.evaluation.splits import SplitSpec

    settings = config.evaluation
    result = evaluate(
        interactions,
        models,
        catalog=catalog,
        split=SplitSpec(method=settings.split, test_size=settings.test_size, seed=settings.seed),
        settings=EvaluationSettings(k=settings.k, weighting=config.weighting),
        params={name: config.models[name] for name in models},
        progress=False,
    )
    return result.to_dict()
