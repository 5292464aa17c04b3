"""Deterministic, sticky assignment: a hash of (salt, unit id) picks the variant.

No per-user state: every server computes the same variant for the same id. The hash is
BLAKE2b (stable across Python versions and machines) mapped to a uniform number in [0, 1),
and the variants own consecutive slices of [0, 1) in proportion to their weights.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable

import numpy as np

from recsys.abtest.experiments import Experiment

_SCALE = float(2**64)


def unit_hash(salt: str, unit_id: str) -> float:
    """Uniform number in [0, 1) for (salt, unit id)."""
    digest = hashlib.blake2b(f"{salt}\x1f{unit_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def cumulative_weights(experiment: Experiment) -> list[float]:
    weights = np.array([v.weight for v in experiment.variants], dtype=np.float64)
    bounds = np.cumsum(weights / weights.sum())
    bounds[-1] = 1.0
    return bounds.tolist()


def assign(experiment: Experiment, unit_id: str) -> str:
    """Name of the variant ``unit_id`` belongs to (ignores status: the design assignment)."""
    position = unit_hash(experiment.salt, unit_id)
    index = bisect_right(cumulative_weights(experiment), position)
    return experiment.variants[min(index, len(experiment.variants) - 1)].name


def assign_many(experiment: Experiment, unit_ids: Iterable[str]) -> np.ndarray:
    """Variant names for many ids, shape (n,) unicode: the same answers as :func:`assign`."""
    bounds = np.asarray(cumulative_weights(experiment))
    positions = np.fromiter((unit_hash(experiment.salt, str(u)) for u in unit_ids), dtype=np.float64)
    index = np.minimum(np.searchsorted(bounds, positions, side="right"), len(bounds) - 1)
    names = np.array([v.name for v in experiment.variants])
    return names[index]
