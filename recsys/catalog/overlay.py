"""The item overlay: price, stock and visibility changed between trainings.

An update (``PATCH /v1/admin/items/{id}``, ``recsys items set``) is stored in
``{p}items:overlay`` (item id -> ``{"set": {field: value}, "base": {field: value}, "at": t}``)
and written, in the same MULTI/EXEC, into the catalogue entry of every retained version
that knows the item, the live one included: the next request is served with it. ``base``
is the value the catalogue file gave the field when it was first overridden.

Each publish applies the overlay to the new version's catalogue in the transaction that
makes it live (WATCHing the overlay, so an update landing meanwhile is not lost). A field
whose catalogue-file value differs from its ``base`` was changed by the catalogue itself:
the file wins and the field leaves the overlay. ``hidden`` is not a catalogue column: it
stays until it is set to false. Hidden and out-of-stock items are never served (the
list-reading script skips them and tops lists up as for the other filters).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from recsys.errors import ConfigError, StoreError
from recsys.data.ids import FORBIDDEN
from recsys.store.keys import KeyLayout

FIELDS: tuple[str, ...] = ("in_stock", "price", "hidden")
MAX_UPDATES = 10_000
MAX_ATTEMPTS = 50
_UNKNOWN = object()  # no catalogue value known for a field (item not in the live version)


class ItemUpdate(BaseModel):
    """One item's changes; a field left out is left as it is (``price: null`` = unknown)."""

    # strict: 0 or "false" is not a boolean, "1.5" not a price (the OpenAPI schema says so too)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    item_id: str = Field(min_length=1, max_length=256)
    in_stock: bool | None = None
    price: float | None = Field(None, ge=0)
    hidden: bool | None = None

    @field_validator("item_id")
    @classmethod
    def _no_control(cls, item_id: str) -> str:
        if FORBIDDEN.search(item_id):
            raise ValueError("must not hold control characters or line breaks")
        return item_id

    @field_validator("price")
    @classmethod
    def _finite(cls, price: float | None) -> float | None:
        if price is not None and not math.isfinite(price):
            raise ValueError("must be a finite number")
        return None if price is None else round(float(price), 2)

    def changes(self) -> dict[str, Any]:
        """The fields this update sets (``in_stock``/``hidden`` null means "not given")."""
        given = self.model_fields_set - {"item_id"}
        return {name: getattr(self, name) for name in FIELDS if name in given and (name == "price" or getattr(self, name) is not None)}


def parse_updates(document: Any, *, item_id: str | None = None) -> list[ItemUpdate]:
    """Updates from a JSON object (one item; ``item_id`` from the URL) or array (bulk).

    ConfigError names the entry and the field of the first problem; nothing is applied then.
    An item named by several entries gets them merged in order (:func:`merge_updates`).
    """
    entries = document if isinstance(document, list) else [document]
    if not entries:
        raise ConfigError("expected at least one item update")
    if len(entries) > MAX_UPDATES:
        raise ConfigError(f"at most {MAX_UPDATES} item updates in one call, got {len(entries)}")
    updates = []
    for index, entry in enumerate(entries):
        where = f"[{index}]" if isinstance(document, list) else "body"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        if item_id is not None:
            if "item_id" in entry and entry["item_id"] != item_id:
                raise ConfigError(f"{where}: item_id {entry['item_id']!r} differs from the URL's {item_id!r}")
            entry = {**entry, "item_id": item_id}
        for name in ("in_stock", "hidden"):
            if name in entry and entry[name] is None:
                raise ConfigError(f"{where}.{name}: must be true or false (leave the field out to keep it)")
        try:
            update = ItemUpdate(**entry)
        except ValidationError as error:
            problem = error.errors()[0]
            field = ".".join(map(str, problem["loc"])) or "entry"
            message = "unknown field (allowed: item_id, in_stock, price, hidden)" if problem["type"] == "extra_forbidden" else problem["msg"]
            raise ConfigError(f"{where}.{field}: {message}") from None
        if not update.changes():
            raise ConfigError(f"{where}: nothing to change (give in_stock, price or hidden)")
        updates.append(update)
    return merge_updates(updates)


def merge_updates(updates: Sequence[ItemUpdate]) -> list[ItemUpdate]:
    """One update per item, in the order items first appear: entries for the same item are
    applied in order, a later one overriding the fields it names (as separate calls would)."""
    merged: dict[str, dict[str, Any]] = {}
    for update in updates:
        merged.setdefault(update.item_id, {}).update(update.changes())
    if len(merged) == len(updates):
        return list(updates)
    return [ItemUpdate(item_id=item_id, **changes) for item_id, changes in merged.items()]


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _loads(raw: bytes | None) -> dict[str, Any] | None:
    return orjson.loads(raw) if raw is not None else None


def patched_entry(entry: dict[str, Any], values: dict[str, Any]) -> bytes:
    """A catalogue entry with overlay ``values``; ``hidden`` appears only when true."""
    out = {k: v for k, v in entry.items() if k != "hidden"}
    for name, value in values.items():
        if name == "hidden":
            continue
        out[name] = value
    if values.get("hidden"):
        out["hidden"] = True
    return orjson.dumps(out)


def apply_updates(client: redis.Redis, layout: KeyLayout, updates: Sequence[ItemUpdate]) -> dict[str, Any]:
    """Apply ``updates`` atomically to the overlay and every retained version's catalogue.

    Returns a receipt: per item the fields now overridden, and in how many versions its
    catalogue entry changed (0 when no version knows the item yet).
    """
    ids = [u.item_id for u in updates]
    for _ in range(MAX_ATTEMPTS):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(layout.item_overlay, layout.live, layout.versions)
                live = _text(pipe.get(layout.live))
                versions = [_text(v) for v in pipe.zrange(layout.versions, 0, -1)]
                if live is not None and live not in versions:
                    versions.append(live)
                catalog_keys = [layout.catalog(v) for v in versions if v]
                if catalog_keys:
                    pipe.watch(*catalog_keys)
                overlay = [_loads(raw) for raw in pipe.hmget(layout.item_overlay, ids)]
                live_entries = [_loads(raw) for raw in pipe.hmget(layout.catalog(live), ids)] if live else [None] * len(ids)
                per_version = {key: [_loads(raw) for raw in pipe.hmget(key, ids)] for key in catalog_keys}
                now = time.time()
                overlay_writes: dict[str, bytes] = {}
                overlay_deletes: list[str] = []
                catalog_writes: dict[str, dict[str, bytes]] = {key: {} for key in catalog_keys}
                receipt_items = []
                for position, update in enumerate(updates):
                    entry = overlay[position] or {"set": {}, "base": {}}
                    current = live_entries[position]
                    changes = update.changes()
                    for name, value in changes.items():
                        if name == "hidden":
                            base: Any = False
                        elif name in entry["set"]:
                            base = entry["base"].get(name, _UNKNOWN)
                        else:
                            base = current.get(name, _UNKNOWN) if current is not None else _UNKNOWN
                        if value == base:
                            entry["set"].pop(name, None)
                            entry["base"].pop(name, None)
                        else:
                            entry["set"][name] = value
                            if name != "hidden" and base is not _UNKNOWN:
                                entry["base"][name] = base
                    entry["at"] = now
                    if entry["set"]:
                        overlay_writes[update.item_id] = orjson.dumps(entry)
                    else:
                        overlay_deletes.append(update.item_id)
                    changed = 0
                    for key in catalog_keys:
                        stored = per_version[key][position]
                        if stored is None:
                            continue
                        # A field set back to the file's value gets that value, as a set one does.
                        values = {"hidden": bool(stored.get("hidden")), **changes}
                        blob = patched_entry(stored, values)
                        if blob != orjson.dumps(stored):
                            catalog_writes[key][update.item_id] = blob
                            changed += 1
                    receipt_items.append({"item_id": update.item_id, "overlay": dict(entry["set"]), "versions_changed": changed})
                pipe.multi()
                if overlay_writes:
                    pipe.hset(layout.item_overlay, mapping=overlay_writes)
                if overlay_deletes:
                    pipe.hdel(layout.item_overlay, *overlay_deletes)
                for key, writes in catalog_writes.items():
                    if writes:
                        pipe.hset(key, mapping=writes)
                pipe.execute()
                return {"updated": len(updates), "live": live, "versions": len(catalog_keys), "items": receipt_items}
            except redis.WatchError:
                continue
    raise StoreError("the catalogue changed under every attempt to update it (a publish running?); retry")


def stage_for_publish(
    catalog: dict[str, np.ndarray] | None, catalog_key: str, layout: KeyLayout
) -> Callable[[Any], Callable[[Any], int]]:
    """For the publisher's switch transaction: reads the overlay (WATCHed) and returns the
    writes that patch the new version's catalogue and drop fields the file changed."""

    def prepare(pipe: Any) -> Callable[[Any], int]:
        pipe.watch(layout.item_overlay)
        raw = pipe.hgetall(layout.item_overlay)
        if not raw or catalog is None:
            return lambda _pipe: 0
        ids = catalog["item_id"]
        order = {str(item): position for position, item in enumerate(ids.tolist())} if len(raw) > 64 else None
        patches: dict[str, bytes] = {}
        overlay_writes: dict[str, bytes] = {}
        overlay_deletes: list[str] = []
        for key, blob in raw.items():
            item = _text(key)
            assert item is not None
            if order is not None:
                position = order.get(item)
            else:
                hits = np.flatnonzero(ids == item)
                position = int(hits[0]) if len(hits) else None
            if position is None:
                continue
            entry = orjson.loads(blob)
            price = float(catalog["price"][position])
            file_values = {
                "in_stock": bool(catalog["in_stock"][position]),
                "price": None if math.isnan(price) else round(price, 2),
            }
            changed = False
            for name in list(entry["set"]):
                if name == "hidden":
                    continue
                if name not in entry["base"]:
                    entry["base"][name] = file_values[name]
                    changed = True
                elif entry["base"][name] != file_values[name]:
                    entry["set"].pop(name)
                    entry["base"].pop(name)
                    changed = True
            if changed:
                if entry["set"]:
                    overlay_writes[item] = orjson.dumps(entry)
                else:
                    overlay_deletes.append(item)
            if entry["set"]:
                stored = {
                    "title": str(catalog["title"][position]),
                    "category": str(catalog["category"][position]),
                    **file_values,
                }
                patches[item] = patched_entry(stored, {**file_values, **entry["set"]})

        def queue(multi: Any) -> int:
            if patches:
                multi.hset(catalog_key, mapping=patches)
            if overlay_writes:
                multi.hset(layout.item_overlay, mapping=overlay_writes)
            if overlay_deletes:
                multi.hdel(layout.item_overlay, *overlay_deletes)
            return len(patches)

        return queue

    return prepare


def read_overlay(client: redis.Redis, layout: KeyLayout) -> dict[str, dict[str, Any]]:
    """The whole overlay: item id -> {"set", "base", "at"}."""
    return {_text(k) or "": orjson.loads(v) for k, v in client.hgetall(layout.item_overlay).items()}
