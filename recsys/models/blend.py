"""Blend: one ranking from several fitted models.

Each component scores a batch of users; scores are made comparable per user (min-max over
the user's candidates) and summed with weights, or the components' top lists are fused by
weighted reciprocal rank (``sum_m w_m / (rrf_k + rank_m)``). Weights are tuned on a
validation split like any other parameter (``recsys tune blend --param weights=...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from recsys.data.dataset import Dataset
from recsys.errors import ModelError
from recsys.models.base import ModelConfig, Recommender, sparse_from_arrays, sparse_to_arrays, top_n
from recsys.models.registry import get_model_class


class Component(ModelConfig):
    """One blended model: its registry name and parameters."""

    model: str
    params: dict[str, Any] = Field(default_factory=dict)


class BlendConfig(ModelConfig):
    components: list[Component] = Field(
        # EASE and ALS make different errors; adding item-kNN to the pair lowered nDCG@10
        # on both MovieLens sets (README, "Results").
        default_factory=lambda: [Component(model="ease"), Component(model="als")],
        min_length=1,
    )
    weights: list[float] | None = Field(None, description="one per component; None = equal")
    method: Literal["score", "rrf"] = "score"
    rrf_k: float = Field(60.0, gt=0, description="rank offset of reciprocal-rank fusion")
    candidates: int = Field(200, ge=1, description="top items per component that rrf fuses")

    @model_validator(mode="after")
    def _check(self) -> BlendConfig:
        if self.weights is not None:
            if len(self.weights) != len(self.components):
                raise ValueError(
                    f"weights has {len(self.weights)} values for {len(self.components)} components"
                )
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be >= 0 with a positive sum")
        names = [c.model for c in self.components]
        if "blend" in names:
            raise ValueError("a blend cannot contain a blend")
        for component in self.components:
            get_model_class(component.model).parse_config(component.params)
        return self


def _minmax_rows(block: np.ndarray) -> np.ndarray:
    """Scale each row's finite scores to [0, 1]; non-finite entries become 0."""
    finite = np.isfinite(block)
    low = np.where(finite, block, np.inf).min(axis=1, keepdims=True)
    high = np.where(finite, block, -np.inf).max(axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    scaled = np.where(finite, (block - low) / span, 0.0)
    return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


class BlendRecommender(Recommender):
    """Weighted fusion of other models' scores or ranks."""

    name = "blend"
    config_class = BlendConfig

    def __init__(self, config: BlendConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.components: list[Recommender] = []

    @property
    def weights(self) -> np.ndarray:
        config: BlendConfig = self.config  # type: ignore[assignment]
        raw = config.weights or [1.0] * len(config.components)
        values = np.asarray(raw, dtype=np.float32)
        return values / values.sum()

    def _fit(self, dataset: Dataset, *, show_progress: bool = False) -> None:
        config: BlendConfig = self.config  # type: ignore[assignment]
        self.components = []
        for component in config.components:
            model = get_model_class(component.model)(component.params)
            missing = [need for need in model.requires if getattr(dataset, need) is None]
            if missing:
                raise ModelError(f"blend: component {component.model!r} needs {', '.join(missing)}")
            model.threads = self.threads
            self.components.append(model.fit(dataset, show_progress=show_progress))

    def _fuse(self, blocks: list[np.ndarray]) -> np.ndarray:
        config: BlendConfig = self.config  # type: ignore[assignment]
        total = np.zeros_like(blocks[0], dtype=np.float32)
        if config.method == "score":
            for weight, block in zip(self.weights, blocks):
                if weight > 0:
                    total += weight * _minmax_rows(block)
            return total
        rows = np.arange(blocks[0].shape[0])[:, None]
        depth = min(config.candidates, blocks[0].shape[1])
        for weight, block in zip(self.weights, blocks):
            if weight <= 0:
                continue
            ids, _ = top_n(block, depth)
            ranks = np.broadcast_to(np.arange(1, depth + 1, dtype=np.float32), ids.shape)
            valid = ids >= 0
            np.add.at(total, (np.broadcast_to(rows, ids.shape)[valid], ids[valid]), weight / (config.rrf_k + ranks[valid]))
        return total

    def _score_users(self, user_indices: np.ndarray) -> np.ndarray:
        return self._fuse([np.asarray(m._score_users(user_indices), np.float32) for m in self.components])

    def _score_items(self, item_indices: np.ndarray) -> np.ndarray:
        blocks = []
        for model in self.components:
            block = np.asarray(model._score_items(item_indices), np.float32).copy()
            block[np.arange(len(item_indices)), item_indices] = -np.inf
            blocks.append(block)
        return self._fuse(blocks)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta: dict[str, Any] = {"components": []}
        arrays: dict[str, np.ndarray] = {}
        for position, model in enumerate(self.components):
            component_meta, component_arrays = model._get_state()
            meta["components"].append(
                {"model": model.name, "config": model.config.model_dump(mode="json"), "state": component_meta}
            )
            for key, value in component_arrays.items():
                arrays[f"c{position}:{key}"] = value
            for key, value in sparse_to_arrays(f"c{position}:user_items", model.user_items).items():
                arrays[key] = value
        return meta, arrays

    def _set_state(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.components = []
        for position, entry in enumerate(meta["components"]):
            model = get_model_class(entry["model"])(entry["config"])
            prefix = f"c{position}:"
            own = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
            model.user_items = sparse_from_arrays("user_items", own)
            model.n_users, model.n_items = model.user_items.shape
            model._set_state(entry["state"], own)
            self.components.append(model)
