"""Experiment definitions and their storage in Redis (hash ``{prefix}ab:experiments``).

Each experiment runs on a named **placement** (``home``, ``product``, ``basket``...; the
API's ``placement=`` parameter, ``default`` when absent): several experiments can run at
once, at most one per placement, each with its own salt so that assignments are
independent across placements. Experiments are checked against what is published: at
creation every variant's model must be a user model of the live version, and an
experiment whose variant model is missing from a later live version is marked
**broken** (its units get the version's default model, labelled ``broken``).

The admin API takes a definition in its own shape (:class:`ExperimentRequest`), one whose
every rule JSON Schema can state: ``variants`` is an object keyed by variant name (names
are unique by construction) that must hold the key ``control`` (the control arm, so it is
a variant by construction), and the window is ``start`` plus a ``duration`` (so it cannot
end before it starts). The CLI and the stored form keep the variant array and ``end``.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import orjson
import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys.errors import ConfigError, RecsysError
from recsys.store.keys import KeyLayout

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DEFAULT_PLACEMENT = "default"
#: The variant label of a broken experiment's answers (no variant may be called so).
BROKEN = "broken"
JSONScalar = str | int | float | bool

#: Variant options the API understands.
VARIANT_OPTIONS = {"exclude_recent": bool, "fallback": str}
#: What ``fallback`` means: "none" serves no popular list to unknown users; anything else
#: (the default, "popular") does. An API definition takes only these two.
FALLBACKS = ("popular", "none")
#: The variant key of the control arm in an API definition (``variants.control``).
CONTROL = "control"
#: Bounds of an API definition's times (unix seconds) and weights, so that every window
#: is a printable date (start by 2106, duration 1 s to 136 years: the end is after the
#: start in float arithmetic too) and weights add up to a finite sum.
MAX_START = 2**32 - 1
MAX_DURATION = 2**32 - 1
MAX_WEIGHT = 1_000_000.0
MAX_VARIANTS = 10


class Variant(BaseModel):
    """One arm: which published list source serves it, and its share of traffic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field(pattern=NAME_PATTERN, description="published model whose user lists this arm serves")
    weight: float = Field(1.0, gt=0, description="relative traffic weight")
    options: dict[str, JSONScalar] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name == BROKEN:
            raise ValueError(f"{BROKEN!r} is reserved (it labels the answers of a broken experiment)")
        return name

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
    placement: str = Field(DEFAULT_PLACEMENT, pattern=NAME_PATTERN, description="where the lists are shown (placement=)")
    variants: list[Variant] = Field(min_length=2, max_length=MAX_VARIANTS)
    control: str = ""
    salt: str = Field(default_factory=lambda: secrets.token_hex(8), min_length=1, max_length=64)
    unit: Literal["user", "session"] = "user"
    start: float = Field(default_factory=time.time, description="unix seconds")
    end: float | None = Field(None, description="unix seconds; None = until stopped")
    status: Literal["running", "stopped"] = "running"
    created_at: float = Field(default_factory=time.time)
    stopped_at: float | None = None
    description: str = Field("", max_length=500)
    broken: str | None = Field(None, description="why the experiment is broken (a variant's model is not published)")
    broken_at: float | None = None

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

    def missing_models(self, user_models: Sequence[str]) -> list[str]:
        """Variant models that are not among ``user_models`` (in variant order, no repeats)."""
        return list(dict.fromkeys(v.model for v in self.variants if v.model not in user_models))

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


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'experiment'}: {e['msg']}" for e in error.errors())


def parse_experiment(data: dict) -> Experiment:
    """Validate a definition; ``ConfigError`` names each bad field."""
    try:
        return Experiment.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"invalid experiment: {_problems(error)}") from None


class VariantOptions(BaseModel):
    """The options of a variant in an API definition (:data:`VARIANT_OPTIONS`, strictly typed)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    exclude_recent: bool = True
    fallback: Literal["popular", "none"] = "popular"


class VariantSpec(BaseModel):
    """A variant of an API definition; its name is its key in ``variants``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(pattern=NAME_PATTERN)
    weight: float = Field(1.0, gt=0, le=MAX_WEIGHT)
    options: VariantOptions = Field(default_factory=VariantOptions)


class ExperimentRequest(BaseModel):
    """The body of ``POST /v1/admin/experiments``: exactly what its OpenAPI schema states.

    ``variants`` maps each variant's name to its model, weight and options and must hold
    :data:`CONTROL`, the control arm. The experiment starts at ``start`` (default now) and
    runs for ``duration`` seconds (default until stopped). Variants are stored control
    first, then by name, so that assignment does not depend on the order in which a JSON
    encoder writes the keys.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=NAME_PATTERN)
    placement: str = Field(DEFAULT_PLACEMENT, pattern=NAME_PATTERN)
    variants: dict[str, VariantSpec] = Field(min_length=2, max_length=MAX_VARIANTS)
    salt: str = Field(default_factory=lambda: secrets.token_hex(8), min_length=1, max_length=64)
    unit: Literal["user", "session"] = "user"
    start: float = Field(default_factory=time.time, ge=0, le=MAX_START, description="unix seconds")
    duration: float | None = Field(None, ge=1, le=MAX_DURATION, description="seconds; None = until stopped")
    description: str = Field("", max_length=500)

    @field_validator("variants")
    @classmethod
    def _names(cls, variants: dict[str, VariantSpec]) -> dict[str, VariantSpec]:
        for name in variants:
            if not re.fullmatch(NAME_PATTERN, name):
                raise ValueError(f"variant name {name[:70]!r} does not match {NAME_PATTERN}")
            if name == BROKEN:
                raise ValueError(f"{BROKEN!r} is reserved (it labels the answers of a broken experiment)")
        if CONTROL not in variants:
            raise ValueError(f"the control arm is the variant keyed {CONTROL!r}; got {', '.join(variants)}")
        return variants

    def experiment(self) -> Experiment:
        """The experiment this request defines (validated as any other)."""
        order = [CONTROL, *sorted(n for n in self.variants if n != CONTROL)]
        definition: dict[str, object] = {
            "name": self.name,
            "placement": self.placement,
            "variants": [
                {"name": n, "model": self.variants[n].model, "weight": self.variants[n].weight,
                 "options": self.variants[n].options.model_dump(include=self.variants[n].options.model_fields_set)}
                for n in order
            ],
            "control": CONTROL,
            "salt": self.salt,
            "unit": self.unit,
            "start": self.start,
            "end": None if self.duration is None else self.start + self.duration,
            "description": self.description,
        }
        return parse_experiment(definition)


def parse_request(document: dict) -> Experiment:
    """An API definition (:class:`ExperimentRequest`) as an experiment; ``ConfigError`` names each bad field."""
    if isinstance(document.get("variants"), list):
        raise ConfigError(
            "invalid experiment: variants: an object keyed by variant name, the control keyed "
            f"{CONTROL!r}: {{\"{CONTROL}\": {{\"model\": \"als\"}}, \"treatment\": {{\"model\": \"ease\"}}}}"
        )
    try:
        request = ExperimentRequest.model_validate(document)
    except ValidationError as error:
        raise ConfigError(f"invalid experiment: {_problems(error)}") from None
    return request.experiment()


def request_to_definition(document: dict) -> dict:
    """An API definition in the stored shape (variants array, ``control``, ``end``): what
    ``recsys ab create --file`` makes of a file written for the API, before its flags apply."""
    experiment = parse_request(document)
    keep = {"name", "placement", "variants", "control", "unit", "start", "end", "description"} | set(document) & {"salt"}
    return {k: v for k, v in experiment.model_dump(mode="json").items() if k in keep}


@dataclass(frozen=True)
class Published:
    """The live version and its user models, what experiments are checked against."""

    version: str
    user_models: tuple[str, ...]
    default_model: str | None


def live_published(client: redis.Redis, layout: KeyLayout) -> Published | None:
    """The live version's user models, or None when nothing is published."""
    live = client.get(layout.live)
    if live is None:
        return None
    version = live.decode() if isinstance(live, bytes) else str(live)
    raw = client.get(layout.meta(version))
    if raw is None:
        return None
    meta = orjson.loads(raw)
    models = tuple(str(m) for m in meta.get("user_models") or [])
    default = meta.get("default_model")
    return Published(version, models, default if default in models else (models[0] if models else None))


def check_published(experiment: Experiment, published: Published | None) -> None:
    """Refuse an experiment whose variants' models are not published user models."""
    if published is None:
        raise RecsysError(
            f"experiment {experiment.name!r}: nothing is published yet; publish a version before creating experiments"
        )
    missing = experiment.missing_models(published.user_models)
    if missing:
        variants = ", ".join(f"{v.name}={v.model}" for v in experiment.variants if v.model in missing)
        raise RecsysError(
            f"experiment {experiment.name!r}: variant model(s) not published in live version {published.version} "
            f"({variants}); available user models: {', '.join(published.user_models) or 'none'}"
        )


class ExperimentStore:
    """CRUD of experiments in one Redis hash (name -> JSON)."""

    def __init__(self, client: redis.Redis, layout: KeyLayout) -> None:
        self.client = client
        self.layout = layout

    def create(self, experiment: Experiment, *, now: float | None = None, published: Published | None = None,
               check: bool = False) -> Experiment:
        """Store a new experiment; refuses a duplicate name or a second running experiment on
        the same placement. ``check``: its models must be in ``published`` (the live version).
        The check and the write are one WATCH/MULTI transaction (two creators cannot both win)."""
        if check:
            check_published(experiment, published)
        key = self.layout.experiments
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    if pipe.hexists(key, experiment.name):
                        raise RecsysError(f"experiment {experiment.name!r} already exists")
                    for raw in pipe.hvals(key):
                        other = Experiment.model_validate_json(raw)
                        if (
                            other.placement == experiment.placement
                            and not other.is_over(now)
                            and experiment.status == "running"
                        ):
                            raise RecsysError(
                                f"experiment {other.name!r} is still running on placement {other.placement!r}; "
                                f"stop it before starting {experiment.name!r} there (or use another --placement)"
                            )
                    pipe.multi()
                    pipe.hset(key, experiment.name, experiment.model_dump_json())
                    pipe.execute()
                    return experiment
                except redis.WatchError:
                    continue

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
        """Stop an experiment: from now on it routes nobody (everyone gets the default model)."""
        experiment = self.get(name)
        if experiment.status != "stopped":
            experiment.status = "stopped"
            experiment.stopped_at = time.time() if now is None else now
            self.client.hset(self.layout.experiments, name, experiment.model_dump_json())
        return experiment

    def delete(self, name: str) -> bool:
        return bool(self.client.hdel(self.layout.experiments, name))

    def mark_broken(self, published: Published | None, *, now: float | None = None) -> list[Experiment]:
        """Mark every experiment that is not over and whose variant models are missing from
        ``published`` as broken (kept so for good); returns the experiments newly marked."""
        if published is None:
            return []
        marked = []
        for experiment in self.list():
            if experiment.broken is not None or experiment.is_over(now):
                continue
            missing = experiment.missing_models(published.user_models)
            if missing:
                marked.append(self.set_broken(experiment.name, published.version, missing, now=now))
        return [e for e in marked if e is not None]

    def set_broken(self, name: str, version: str, missing: Sequence[str], *, now: float | None = None) -> Experiment | None:
        """Record that ``name`` is broken since ``version`` lacks ``missing`` (None if gone)."""
        try:
            experiment = self.get(name)
        except KeyError:
            return None
        if experiment.broken is None:
            experiment.broken = f"model(s) {', '.join(missing)} not published in version {version}"
            experiment.broken_at = time.time() if now is None else now
            self.client.hset(self.layout.experiments, name, experiment.model_dump_json())
        return experiment
