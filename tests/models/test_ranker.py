"""The two-stage ranker: the model contract, carving, features and explanations."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.models.ranker import RankerConfig, carve_labels
from tests.models.contract import RecommenderContract

SMALL = {
    "candidates": [
        {"model": "ease", "params": {"l2": 10.0}},
        {"model": "itemknn", "params": {"k": 10}},
        {"model": "popular"},
    ],
    "per_model": 20,
    "n_estimators": 30,
    "min_child_samples": 5,
    "num_leaves": 7,
}


class TestRanker(RecommenderContract):
    model_name = "ranker"
    params = SMALL
