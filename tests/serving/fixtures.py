"""A small, fully known published version written straight into the key layout of
recsys/store/keys.py (what the publisher writes), for API tests that must know every answer.

Catalogue: items i0..i19 in categories "books" (i0-i9) and "garden" (i10-i19); i7 and i15
are out of stock; i19 has no interactions (only the content model lists it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
import redis

from recsys.store.codec import encode_list
from recsys.store.keys import OVERALL, KeyLayout

OUT_OF_STOCK = frozenset({"i7", "i15"})


def catalog() -> dict[str, dict[str, object]]:
    """Item id -> catalogue entry as published."""
    entries = {}
    for k in range(20):
        item = f"i{k}"
        entries[item] = {
            "title": f"Item {k}",
            "category": "books" if k < 10 else "garden",
            "price": round(5.0 + k, 2),
            "in_stock": item not in OUT_OF_STOCK,
        }
    return entries


def descending(ids: list[str], top: float = 1.0, step: float = 0.05) -> bytes:
    return encode_list(ids, [round(top - step * k, 5) for k in range(len(ids))])


@dataclass
class FakeVersion:
    """What :func:`publish_fake` wrote: lists by hash and field, for expected answers."""

    version: str
    user_lists: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    similar: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    together: dict[str, tuple[list[str], list[float], list[float]]] = field(default_factory=dict)
    popular: dict[str, list[str]] = field(default_factory=dict)
    catalog: dict[str, dict[str, object]] = field(default_factory=dict)


def fake_lists() -> FakeVersion:
    """The lists of the fake version (no Redis)."""
    books = [f"i{k}" for k in range(10)]
    garden = [f"i{k}" for k in range(10, 19)]
    fake = FakeVersion(version="")
    fake.catalog = catalog()
    fake.user_lists = {
        "als": {
            # u1 likes books; i7 (out of stock) is in the list and must never be served.
            "u1": ["i3", "i7", "i1", "i12", "i5", "i2", "i14", "i0"],
            "u2": ["i10", "i11", "i12", "i13", "i15", "i16"],
            # A list with only two garden items: category=garden with n=5 needs a top-up.
            "u3": ["i4", "i11", "i6", "i17"],
        },
        "itemknn": {
            "u1": ["i9", "i8", "i6"],
            "u2": ["i18", "i17"],
        },
    }
    fake.similar = {
        "itemknn": {
            "i1": ["i2", "i3", "i7", "i4"],
            "i10": ["i11", "i15", "i12"],
        },
        "content": {
            "i1": ["i9", "i8"],
            "i19": ["i18", "i17", "i16"],
        },
    }
    fake.together = {
        "i1": (["i2", "i5", "i12"], [0.6, 0.3, 0.2], [3.0, 1.5, 1.1]),
        "i2": (["i5", "i7", "i3"], [0.5, 0.45, 0.25], [2.0, 1.9, 1.2]),
        "i12": (["i13"], [0.9], [4.0]),
    }
    fake.popular = {
        OVERALL: ["i0", "i10", "i7", "i1", "i11", "i2", "i12", "i3", "i13", "i4"],
        "books": books,
        "garden": garden,
    }
    return fake


def publish_fake(
    client: redis.Redis,
    layout: KeyLayout,
    version: str | None = None,
    *,
    default_model: str = "als",
    fake: FakeVersion | None = None,
    make_live: bool = True,
) -> FakeVersion:
    """Write the fake version under ``layout`` and (by default) make it live."""
    fake = fake or fake_lists()
    fake.version = version or f"fake-{time.time_ns()}"
    v = fake.version
    pipe = client.pipeline(transaction=False)
    pipe.hset(layout.catalog(v), mapping={k: orjson.dumps(e) for k, e in fake.catalog.items()})
    for model, lists in fake.user_lists.items():
        pipe.hset(layout.user_recs(v, model), mapping={u: descending(ids) for u, ids in lists.items()})
    for model, lists in fake.similar.items():
        pipe.hset(layout.similar(v, model), mapping={i: descending(ids, 0.9) for i, ids in lists.items()})
    together = {
        item: encode_list(ids, conf, {"c": conf, "l": lift}) for item, (ids, conf, lift) in fake.together.items()
    }
    pipe.hset(layout.together(v), mapping=together)
    pipe.hset(layout.popular(v), mapping={c: descending(ids, 100.0, 5.0) for c, ids in fake.popular.items()})
    meta = {
        "version": v,
        "created_at": time.time(),
        "run": "fake",
        "user_models": list(fake.user_lists),
        "similar_models": list(fake.similar),
        "default_model": default_model,
        "has_together": True,
        "has_popular": True,
        "has_catalog": True,
        "categories": sorted(c for c in fake.popular if c != OVERALL),
        "list_length": {"user": 8, "similar": 4, "together": 3, "popular": 10},
        "counts": {},
    }
    pipe.set(layout.meta(v), orjson.dumps(meta))
    if make_live:
        pipe.set(layout.live, v)
        pipe.zadd(layout.versions, {v: time.time()})
    pipe.execute()
    return fake


def expected_items(ids: list[str], *, skip: set[str] = frozenset(), n: int = 10, category: str | None = None) -> list[str]:
    """The ids the API must serve from ``ids``: in stock, not skipped, of ``category``."""
    entries = catalog()
    out = []
    for item in ids:
        entry = entries.get(item)
        if item in skip or item in out or (entry is not None and not entry["in_stock"]):
            continue
        if category is not None and (entry is None or entry["category"] != category):
            continue
        out.append(item)
    return out[:n]
