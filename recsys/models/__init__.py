"""Recommenders behind one interface (:class:`recsys.models.base.Recommender`)."""

from recsys.models.base import ModelConfig, Recommender
from recsys.models.registry import create_model, get_model_class, model_names

__all__ = ["ModelConfig", "Recommender", "create_model", "get_model_class", "model_names"]
