"""A live version that holds only metadata: enough for experiments to be checked against."""

from __future__ import annotations

import time

import orjson
import redis

from recsys.store.keys import KeyLayout


def publish_meta(client: redis.Redis, layout: KeyLayout, version: str, user_models: list[str]) -> None:
    """Make ``version`` live with these user models (no lists: nothing is served from it)."""
    meta = {"version": version, "created_at": time.time(), "run": "test", "user_models": user_models,
            "similar_models": [], "default_model": user_models[0], "has_together": False, "has_popular": False,
            "categories": [], "list_length": {}, "counts": {}}
    client.set(layout.meta(version), orjson.dumps(meta))
    client.set(layout.live, version)
