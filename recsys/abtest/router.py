"""What the API asks per request: which experiment and variant serve this user.

The router keeps the experiment definitions in memory and refreshes them from Redis at
most every ``refresh_seconds``, so a request costs no extra Redis round trip.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from recsys.abtest.assignment import assign
from recsys.abtest.experiments import DEFAULT_PLACEMENT, Experiment, ExperimentStore
from recsys.store.keys import KeyLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Routing:
    """The list source for one request: experiment, variant and its model and options.

    ``models`` are every variant's models: when the live version lacks one of them the
    experiment is broken and the request gets the version's default model instead,
    labelled ``broken`` (``broken`` is already True once the store says so)."""

    experiment: str
    variant: str
    model: str
    options: dict[str, object] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    broken: bool = False

    def missing(self, user_models: tuple[str, ...] | frozenset[str]) -> list[str]:
        """Variant models of the experiment that ``user_models`` lacks."""
        return [m for m in self.models if m not in user_models]


def new_recommendation_id() -> str:
    """Unique id for one served list, for events to quote: time-ordered hex + random.

    48 random bits from the process's generator (reseeded from the OS in every forked
    worker): ids need to be unique, not secret, and a system call per request costs more
    than the rest of making the id."""
    return f"{int(time.time() * 1000):x}-{random.getrandbits(48):012x}"


class ExperimentRouter:
    """Routes a unit id (user or session) to a variant of the experiment running on a placement."""

    def __init__(self, client: redis.Redis, layout: KeyLayout, refresh_seconds: float = 2.0) -> None:
        self.store = ExperimentStore(client, layout)
        self.refresh_seconds = refresh_seconds
        self._experiments: list[Experiment] = []
        self._by_placement: dict[str, list[Experiment]] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self._marked: set[tuple[str, str]] = set()

    def experiments(self) -> list[Experiment]:
        """Cached definitions; a Redis error keeps serving the last known ones."""
        now = time.monotonic()
        if now - self._loaded_at >= self.refresh_seconds:
            with self._lock:
                if now - self._loaded_at >= self.refresh_seconds:
                    try:
                        experiments = self.store.list()
                        by_placement: dict[str, list[Experiment]] = {}
                        for experiment in experiments:
                            by_placement.setdefault(experiment.placement, []).append(experiment)
                        self._experiments, self._by_placement = experiments, by_placement
                        _on_refresh(experiments)
                    finally:
                        self._loaded_at = now
        return self._experiments

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    def route(
        self, user_id: str | None, session_id: str | None = None, now: float | None = None,
        placement: str = DEFAULT_PLACEMENT,
    ) -> Routing | None:
        """The routing for this request, or None when no experiment runs on ``placement``.

        Only a running experiment within its window routes; stopped, ended and scheduled
        ones route nobody (the version's default model serves).
        """
        self.experiments()
        for experiment in reversed(self._by_placement.get(placement, ())):
            if not experiment.is_active(now):
                continue
            unit = user_id if experiment.unit == "user" else session_id
            if not unit:
                return None
            variant = experiment.variant(assign(experiment, unit))
            return Routing(
                experiment.name, variant.name, variant.model, dict(variant.options),
                tuple(dict.fromkeys(v.model for v in experiment.variants)), experiment.broken is not None,
            )
        return None

    def mark_broken(self, experiment: str, version: str, missing: list[str]) -> None:
        """Store that ``experiment`` is broken in ``version`` (once per process and version)."""
        key = (experiment, version)
        if key in self._marked:
            return
        self._marked.add(key)
        marked = self.store.set_broken(experiment, version, missing)
        if marked is not None:
            log.warning("A/B experiment %s is broken: %s; its users get the default model", experiment, marked.broken)
        self.invalidate()


#: Called with the experiments after each refresh (the API sets its metrics from them).
_refresh_hooks: list[Callable[[list[Experiment]], None]] = []


def on_refresh(hook: Callable[[list[Experiment]], None]) -> None:
    """Register ``hook(experiments)``, called after every refresh of the definitions."""
    _refresh_hooks.append(hook)


def _on_refresh(experiments: list[Experiment]) -> None:
    for hook in _refresh_hooks:
        hook(experiments)
