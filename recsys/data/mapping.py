"""How a shop's own export maps onto the engine's tables: the ``[data]`` mapping keys.

A shop's files have column names, event names, date formats and cancellation marks of
their own. :class:`DataMapping` says which column is the user, the item, the time...,
how the shop's event names translate to :data:`recsys.data.schema.EVENT_TYPES`, how to
read its dates, and which lines are cancellations. The loaders (:mod:`recsys.data.loaders`)
apply it; the pipeline's ``[data]`` section (``DataConfig``) is a :class:`DataMapping`
with the data source added. Documented in docs/data.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recsys.data import schema

MAPPED_EVENT_TARGETS = (*schema.EVENT_TYPES, schema.CANCEL)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InteractionColumns(_Strict):
    """``[data.columns]``: our name = the shop's column (leave a key out: found by its usual names)."""

    user_id: str | None = None
    item_id: str | None = None
    event_type: str | None = None
    value: str | None = None
    timestamp: str | None = None
    session_id: str | None = None
    order_id: str | list[str] | None = Field(
        None, description="a column, or a list of columns whose combination is the order (e.g. customer and day)"
    )

    @field_validator("order_id")
    @classmethod
    def _non_empty_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("a list of order columns must name at least one column")
            if len(set(value)) != len(value):
                raise ValueError(f"a column is listed twice: {value}")
            return value[0] if len(value) == 1 else value
        return value

    def single(self) -> dict[str, str]:
        """Schema name -> shop column for every key mapped to one column."""
        return {name: value for name, value in self.model_dump().items() if isinstance(value, str)}

    def combined(self) -> dict[str, list[str]]:
        """Schema name -> shop columns for keys mapped to a combination of columns."""
        return {name: value for name, value in self.model_dump().items() if isinstance(value, list)}


class CatalogColumns(_Strict):
    """``[data.catalog_columns]``: catalogue fields = the shop's columns.

    They apply to the catalogue file; without one, to the interactions file, whose lines
    then make the catalogue (see :func:`recsys.data.loaders.catalog_from_lines`).
    """

    item_id: str | None = None
    title: str | None = None
    description: str | None = None
    category: str | None = None
    price: str | None = None
    in_stock: str | None = None

    def single(self) -> dict[str, str]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


class Cancellations(_Strict):
    """``[data.cancellations]``: which lines are cancellations (dropped, counted as ``cancelled``).

    Event types ``cancel``/``return``/``refund`` always are; these add the shop's own marks.
    """

    order_id_prefix: str | None = Field(None, min_length=1, description='e.g. "C": order C536379 is a cancellation')
    negative_value: bool = Field(False, description="a negative value (quantity) marks a cancellation or return")


class DataMapping(_Strict):
    """The mapping keys of ``[data]``; every key is optional."""

    columns: InteractionColumns = Field(default_factory=InteractionColumns)
    catalog_columns: CatalogColumns = Field(default_factory=CatalogColumns)
    event_types: dict[str, str] = Field(
        default_factory=dict, description='the shop\'s event names -> ours, e.g. { "PURCHASE" = "purchase", "pv" = "view" }'
    )
    default_event_type: str | None = Field(
        None, description='event type of every line of a file without an event type column ("purchase", "rating", ...)'
    )
    timestamp_format: str | None = Field(
        None, description='strptime pattern such as "%m/%d/%Y %H:%M"; unix seconds and ISO-8601 are read without it'
    )
    cancellations: Cancellations = Field(default_factory=Cancellations)
    decimal_separator: Literal["auto", ".", ","] = Field(
        "auto", description="of prices; auto reads 3.50, 3,50, 1.234,50 and 1,234.50 and refuses an ambiguous 1,234"
    )
    max_dropped_share: float = Field(
        0.05, ge=0, le=1, description="share of catalogue rows dropped above which a lenient run warns loudly"
    )

    @field_validator("event_types")
    @classmethod
    def _known_targets(cls, mapping: dict[str, str]) -> dict[str, str]:
        bad = {source: target for source, target in mapping.items() if target not in MAPPED_EVENT_TARGETS}
        if bad:
            source, target = next(iter(bad.items()))
            raise ValueError(f"{source!r} = {target!r}: not an event type (allowed: {', '.join(MAPPED_EVENT_TARGETS)})")
        return mapping

    @field_validator("default_event_type")
    @classmethod
    def _known_default(cls, value: str | None) -> str | None:
        if value is not None and value not in schema.EVENT_TYPES:
            raise ValueError(f"{value!r} is not an event type (allowed: {', '.join(schema.EVENT_TYPES)})")
        return value

    @field_validator("timestamp_format")
    @classmethod
    def _is_pattern(cls, value: str | None) -> str | None:
        if value is not None and "%" not in value:
            raise ValueError(f"{value!r} is not a strptime pattern (e.g. \"%d/%m/%Y %H:%M\")")
        return value

    @model_validator(mode="after")
    def _distinct_columns(self) -> DataMapping:
        for key, columns in (("columns", self.columns.single()), ("catalog_columns", self.catalog_columns.single())):
            seen: dict[str, str] = {}
            for name, column in columns.items():
                if column in seen:
                    raise ValueError(f"data.{key}: column {column!r} is mapped to both {seen[column]} and {name}")
                seen[column] = name
        return self
