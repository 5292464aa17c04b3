"""What the API asks per request: which experiment and variant serve this user.

The router keeps the experiment definitions in memory and refreshes them from Redis at
most every ``refresh_seconds``, so a request costs no extra Redis round trip.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import redis

from recsys.abtest.assignment import assign
from recsys.abtest.experiments import Experiment, ExperimentStore
from recsys.store.keys import KeyLayout


@dataclass(frozen=True)
class Routing:
    """The list source for one request. ``active`` is False once the experiment is over
    (everyone gets the control then, and the response carries no experiment)."""

    experiment: str
    variant: str
    model: str
    options: dict[str, object] = field(default_factory=dict)
    active: bool = True


def new_recommendation_id() -> str:
    """Unique id for one served list, for events to quote: time-ordered hex + random.

    48 random bits from the process's generator (reseeded from the OS in every forked
    worker): ids need to be unique, not secret, and a system call per request costs more
    than the rest of making the id."""
    return f"{int(time.time() * 1000):x}-{random.getrandbits(48):012x}"


class ExperimentRouter:
    """Routes a unit id (user or session) to a variant of the current experiment."""

    def __init__(self, client: redis.Redis, layout: KeyLayout, refresh_seconds: float = 2.0) -> None:
        self.store = ExperimentStore(client, layout)
        self.refresh_seconds = refresh_seconds
        self._experiments: list[Experiment] = []
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def experiments(self) -> list[Experiment]:
        """Cached definitions; a Redis error keeps serving the last known ones."""
        now = time.monotonic()
        if now - self._loaded_at >= self.refresh_seconds:
            with self._lock:
                if now - self._loaded_at >= self.refresh_seconds:
                    try:
                        self._experiments = self.store.list()
                    finally:
                        self._loaded_at = now
        return self._experiments

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    def route(self, user_id: str | None, session_id: str | None = None, now: float | None = None) -> Routing | None:
        """The routing for this request, or None when no experiment applies.

        The newest experiment that is running (or stopped but not deleted) decides: running
        -> the hashed variant; stopped or ended -> the control, marked inactive.
        """
        for experiment in reversed(self.experiments()):
            unit = user_id if experiment.unit == "user" else session_id
            if experiment.is_active(now):
                if not unit:
                    continue
                variant = experiment.variant(assign(experiment, unit))
                return Routing(experiment.name, variant.name, variant.model, dict(variant.options), True)
            if experiment.is_over(now):
                control = experiment.control_variant
                return Routing(experiment.name, control.name, control.model, dict(control.options), False)
        return None
