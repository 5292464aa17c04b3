"""Experiment definitions and their storage in Redis (hash ``{prefix}ab:experiments``)."""

from __future__ import annotations

import secrets
import time
from typing import Literal

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys.errors import ConfigError, RecsysError
from recsys.store.keys import KeyLayout

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
JSONScalar = str | int | float | bool

#: Variant options the API understands.
VARIANT_OPTIONS = {"exclude_recent": bool, "fallback": str}


class Variant(BaseModel):
    """One arm: which published list source serves it, and its share of traffic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field(min_length=1, max_length=64, description="published model whose user lists this arm serves")
    weight: float = Field(1.0, gt=0, description="relative traffic weight")
    options: dict[str, JSONScalar] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _known_options(cls, options: dict[str, JSONScalar]) -> dict[str, JSONScalar]:
        for key, value in options.items():
            if key not in VARIANT_OPTIONS:
                raise ValueError(f"unknown option {key!r} (allowed: {', '.join(VARIANT_OPTIONS)})")
            if not isinstance(value, VARIANT_OPTIONS[key]):
                raise ValueError(f"option {key!r} must be {VARIANT_OPTIONS[key].__name__}")
        return options


class Experiment(BaseModel):
    """An experiment: variants with weights, a window, a salt and a status.

    ``unit`` says what is randomised: the user id, or the session id (anonymous traffic).
    The first variant is the control unless ``control`` names another.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    variants: list[Variant] = Field(min_length=2, max_length=10)
    control: str = ""
    salt: str = Field(default_factory=lambda: secrets.token_hex(8), min_length=1, max_length=64)
    unit: Literal["user", "session"] = "user"
    start: float = Field(default_factory=time.time, description="unix seconds")
    end: float | None = Field(None, description="unix seconds; None = until stopped")
    status: Literal["running", "stopped"] = "running"
    created_at: float = Field(default_factory=time.time)
    stopped_at: float | None = None
    description: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if not self.control:
            self.control = names[0]
        elif self.control not in names:
            raise ValueError(f"control {self.control!r} is not a variant (variants: {', '.join(names)})")
        if self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def control_variant(self) -> Variant:
        return next(v for v in self.variants if v.name == self.control)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)

    def is_active(self, now: float | None = None) -> bool:
        """Running, started, and not past its end."""
        now = time.time() if now is None else now
        return self.status == "running" and self.start <= now and (self.end is None or now < self.end)

    def is_over(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.status == "stopped" or (self.end is not None and now >= self.end)

    def window(self) -> tuple[float, float | None]:
        """(start, end) of the period whose events count: stop time or end, whichever is first."""
        ends = [t for t in (self.end, self.stopped_at) if t is not None]
        return self.start, min(ends) if ends else None


def parse_experiment(data: dict) -> Experiment:
    """Validate a definition; ``ConfigError`` names each bad field."""
    try:
        return Experiment.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'experiment'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"invalid experiment: {problems}") from None


class ExperimentStore:
    """CRUD of experiments in one Redis hash (name -> JSON)."""

    def __init__(self, client: redis.Redis, layout: KeyLayout) -> None:
        self.client = client
        self.layout = layout

    def create(self, experiment: Experiment, *, now: float | None = None) -> Experiment:
        """Store a new experiment; refuses a duplicate name or a second running experiment."""
        for other in self.list():
            if other.name != experiment.name and not other.is_over(now) and experiment.status == "running":
                raise RecsysError(
                    f"experiment {other.name!r} is still running; stop it before starting {experiment.name!r}"
                )
        if not self.client.hsetnx(self.layout.experiments, experiment.name, experiment.model_dump_json()):
            raise RecsysError(f"experiment {experiment.name!r} already exists")
        return experiment

    def get(self, name: str) -> Experiment:
        raw = self.client.hget(self.layout.experiments, name)
        if raw is None:
            raise KeyError(name)
        return Experiment.model_validate_json(raw)

    def list(self) -> list[Experiment]:
        """All experiments, oldest first."""
        raw = self.client.hvals(self.layout.experiments)
        return sorted((Experiment.model_validate_json(r) for r in raw), key=lambda e: (e.created_at, e.name))

    def stop(self, name: str, *, now: float | None = None) -> Experiment:
        """Stop an experiment: from now on everyone gets the control."""
        experiment = self.get(name)
        if experiment.status != "stopped":
            experiment.status = "stopped"
            experiment.stopped_at = time.time() if now is None else now
            self.client.hset(self.layout.experiments, name, experiment.model_dump_json())
        return experiment

    def delete(self, name: str) -> bool:
        return bool(self.client.hdel(self.layout.experiments, name))
