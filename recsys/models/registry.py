"""Registry: model name -> class. Classes are imported on first use, so listing the names
costs nothing and a model's heavy library loads only when that model is asked for."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from recsys.errors import ConfigError

if TYPE_CHECKING:
    from recsys.models.base import Recommender

MODELS: dict[str, str] = {
    "popular": "recsys.models.popular:PopularRecommender",
    "itemknn": "recsys.models.itemknn:ItemKNNRecommender",
    "userknn": "recsys.models.userknn:UserKNNRecommender",
    "als": "recsys.models.als:ALSRecommender",
    "bpr": "recsys.models.als:BPRRecommender",
    "svd": "recsys.models.svd:SVDRecommender",
    "content": "recsys.models.content:ContentRecommender",
    "rules": "recsys.models.rules:RulesRecommender",
    "ease": "recsys.models.ease:EASERecommender",
    "blend": "recsys.models.blend:BlendRecommender",
    "ranker": "recsys.models.ranker:RankerRecommender",
}


def model_names() -> list[str]:
    return list(MODELS)


def get_model_class(name: str) -> type[Recommender]:
    """The class registered under ``name``; ``ConfigError`` listing the names when unknown."""
    try:
        module_name, class_name = MODELS[name].split(":")
    except KeyError:
        raise ConfigError(f"unknown model {name!r} (available: {', '.join(MODELS)})") from None
    return getattr(import_module(module_name), class_name)


def create_model(name: str, config: dict | None = None, **params: object) -> Recommender:
    """A new, unfitted model of kind ``name`` with validated parameters."""
    return get_model_class(name)(config, **params)
