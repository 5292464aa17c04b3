"""Offline evaluation: splits, metrics, model comparison and parameter tuning."""

from recsys.evaluation.runner import EvaluationResult, EvaluationSettings, evaluate, load_input
from recsys.evaluation.splits import (
    Split,
    SplitSpec,
    describe_split,
    kfold_splits,
    leave_last_split,
    split_data,
    stratified_split,
    temporal_split,
)
from recsys.evaluation.tuning import TuningResult, tune

__all__ = [
    "EvaluationResult",
    "EvaluationSettings",
    "Split",
    "SplitSpec",
    "TuningResult",
    "describe_split",
    "evaluate",
    "kfold_splits",
    "leave_last_split",
    "load_input",
    "split_data",
    "stratified_split",
    "temporal_split",
    "tune",
]
