import numpy as np
import pytest

from recsys.errors import ConfigError
from recsys.models.blend import BlendRecommender
from tests.models.contract import RecommenderContract, cluster_dataset

COMPONENTS = [
    {"model": "itemknn", "params": {"k": 20}},
    {"model": "als", "params": {"factors": 8, "iterations": 8, "regularization": 1.0, "random_state": 0}},
    {"model": "popular"},
]


class TestBlendScore(RecommenderContract):
    model_name = "blend"
    params = {"components": COMPONENTS, "weights": [0.5, 0.4, 0.1]}


class TestBlendRRF(RecommenderContract):
    model_name = "blend"
    params = {"components": COMPONENTS, "weights": [0.5, 0.4, 0.1], "method": "rrf", "candidates": 20, "rrf_k": 2.0}


def test_single_component_blend_ranks_like_the_component() -> None:
    dataset = cluster_dataset()
    blend = BlendRecommender(components=[{"model": "itemknn", "params": {"k": 20}}]).fit(dataset)
    alone = blend.components[0]
    users = np.arange(dataset.n_users)
    np.testing.assert_array_equal(blend.recommend(users, 5)[0], alone.recommend(users, 5)[0])


def test_zero_weight_component_is_ignored() -> None:
    dataset = cluster_dataset()
    blend = BlendRecommender(components=COMPONENTS[:2], weights=[1.0, 0.0]).fit(dataset)
    users = np.arange(dataset.n_users)
    np.testing.assert_array_equal(blend.recommend(users, 5)[0], blend.components[0].recommend(users, 5)[0])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"weights": [1.0]}, "weights has 1 values for 2 components"),
        ({"components": [{"model": "nope"}]}, "unknown model 'nope'"),
        ({"components": [{"model": "blend"}]}, "cannot contain a blend"),
        ({"components": [{"model": "als", "params": {"factorz": 3}}]}, "unknown parameter 'factorz'"),
    ],
)
def test_invalid_blend_configs(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BlendRecommender(params)
