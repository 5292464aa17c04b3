"""Reading published lists: one Lua script call (EVALSHA) per request.

The script (``recommend.lua`` beside this file) reads ``live``, the list the request needs,
the catalogue entries of its items and the user's recent items, filters them (excluded,
recent, out of stock, hidden by the item overlay, other category) and returns the chosen
entries, atomically. The caller passes the version whose metadata it holds; when ``live``
moved on, the script answers "stale" and the reader loads the new version's metadata
(immutable, so cached for good) and asks again. In the steady state a request is one round trip, sent through
the process's :mod:`serving.link` (pipelined with other requests' calls under gevent).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from redis.exceptions import NoScriptError

from recsys.errors import StoreError
from recsys.store.codec import LIST_REASONS, default_reason
from recsys.store.keys import OVERALL, KeyLayout
from serving.link import open_link, pack_arguments

log = logging.getLogger(__name__)

SCRIPT_PATH = Path(__file__).with_name("recommend.lua")
#: Versions whose metadata is kept in memory (a few: live, and the ones just replaced).
META_CACHE_SIZE = 8
#: Attempts when the live version changes between metadata load and list read.
MAX_ATTEMPTS = 3
_CORRUPT = re.compile(r"(corrupt [^\n]*?)(?: script: |$)")


class NoLiveVersion(StoreError):
    """Nothing is published under this prefix yet."""


@dataclass(frozen=True)
class Meta:
    """What the API needs of one version's metadata (``{p}v:{v}:meta``)."""

    version: str
    user_models: tuple[str, ...]
    similar_models: tuple[str, ...]
    default_model: str | None
    has_together: bool
    has_popular: bool
    categories: frozenset[str]
    category_list: tuple[str, ...]
    list_length: dict[str, int]
    created_at: float | None
    #: Segment id -> name when the version has per-segment popular lists (else empty).
    segments: dict[str, str] = field(default_factory=dict)
    #: Similar-items models in the order tried when no model is asked for: the default
    #: model first (when it has similar lists), content-based ones last (they cover items
    #: without interactions, collaborative ones are better where they exist).
    similar_order: tuple[str, ...] = field(default=())
    #: List name (``user:{model}``, ``popular``, ``segment``) -> reason type of its entries
    #: without a because item, as published (recsys/store/keys.py); see :meth:`reason`.
    reasons: dict[str, str] = field(default_factory=dict)

    def reason(self, kind: str, model: str | None = None) -> str:
        """The reason type of a list's entries without a because item: as the version
        publishes it, else assumed from the model name (versions before explanations)."""
        return self.reasons.get(f"{kind}:{model}" if model else kind) or default_reason(kind, model)

    @classmethod
    def parse(cls, version: str, raw: bytes) -> Meta:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise StoreError(f"metadata of version {version} is not JSON: {error}") from None
        if not isinstance(document, dict):
            raise StoreError(f"metadata of version {version} is not a JSON object")

        def names(key: str) -> tuple[str, ...]:
            value = document.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise StoreError(f"metadata of version {version}: {key} must be a list of names")
            return tuple(value)

        user_models, similar_models = names("user_models"), names("similar_models")
        categories = names("categories")
        default = document.get("default_model")
        if default is not None and default not in user_models:
            default = user_models[0] if user_models else None
        if default is None and user_models:
            default = user_models[0]
        lengths = document.get("list_length") or {}
        order = sorted(
            similar_models,
            key=lambda m: (m != default, m == "content", similar_models.index(m)),
        )
        created = document.get("created_at")
        segments = document.get("segments") or {}
        if not isinstance(segments, dict):
            raise StoreError(f"metadata of version {version}: segments must be an object (id -> name)")
        reasons = document.get("reasons") or {}
        if not isinstance(reasons, dict):
            raise StoreError(f"metadata of version {version}: reasons must be an object (list -> reason type)")
        return cls(
            version=version,
            user_models=user_models,
            similar_models=similar_models,
            default_model=default,
            has_together=bool(document.get("has_together")),
            has_popular=bool(document.get("has_popular")),
            categories=frozenset(c for c in categories if c != OVERALL),
            category_list=tuple(c for c in categories if c != OVERALL),
            list_length={str(k): int(v) for k, v in lengths.items() if isinstance(v, int | float)},
            created_at=float(created) if isinstance(created, int | float) else None,
            similar_order=tuple(order),
            segments={str(k): str(v) for k, v in segments.items()},
            reasons={str(k): str(v) for k, v in reasons.items() if v in LIST_REASONS},
        )


@dataclass
class ListResult:
    """What the script returned for one request."""

    version: str
    meta: Meta
    source: str
    fallback: str | None
    known: str
    #: The entries as a JSON array (bytes), ready to be placed into the answer.
    items_json: bytes
    #: The segment id whose popular list filled the answer (user lists), else None.
    segment: str | None = None

    @property
    def segment_name(self) -> str | None:
        if self.segment is None:
            return None
        return self.meta.segments.get(self.segment, self.segment)

    @property
    def items(self) -> list[dict[str, Any]]:
        """The entries decoded (for callers that inspect them; the API sends the bytes)."""
        return orjson.loads(self.items_json)


class Reader:
    """Reads lists through the script, keeping metadata of recent versions in memory.

    One per process; thread-safe (the only shared state is the metadata cache).
    """

    def __init__(self, client: redis.Redis, layout: KeyLayout) -> None:
        self.client = client
        self.layout = layout
        with open(SCRIPT_PATH, encoding="utf-8") as handle:
            self.source = handle.read()
        # Registered once per process; loaded into Redis on the first NOSCRIPT answer.
        self.script = client.register_script(self.source)
        self.sha: str = self.script.sha
        self._meta: OrderedDict[str, Meta] = OrderedDict()
        self._lock = threading.Lock()
        #: How this process sends commands (pipelined under gevent, pooled with threads).
        self.link = open_link(client)
        self._heads: dict[str, bytes] = {}
        #: The version whose metadata the next request sends (the live one last seen).
        self.hint: str = ""

    # ------------------------------------------------------------------ metadata
    def meta(self, version: str) -> Meta:
        """Metadata of ``version``, from memory or (once) from Redis."""
        cached = self._meta.get(version)
        if cached is not None:
            return cached
        raw = self.client.get(self.layout.meta(version))
        if raw is None:
            raise StoreError(f"live version {version} has no metadata ({self.layout.meta(version)})")
        meta = Meta.parse(version, raw)
        with self._lock:
            self._meta[version] = meta
            while len(self._meta) > META_CACHE_SIZE:
                self._meta.popitem(last=False)
        return meta

    def current(self) -> Meta:
        """Metadata of the live version; raises NoLiveVersion when none is published."""
        if self.hint:
            return self.meta(self.hint)
        live = self.client.get(self.layout.live)
        if live is None:
            raise NoLiveVersion(f"no version is published under prefix {self.layout.prefix!r} yet")
        self.hint = live.decode()
        return self.meta(self.hint)

    # ------------------------------------------------------------------ reads
    def read(self, mode: str, n: int, resolve: Callable[[Meta], Sequence[str]]) -> ListResult:
        """Run the script in ``mode``. ``resolve(meta)`` computes the mode's arguments from
        the version's metadata (it may validate a model or category and raise), and is
        called again when the live version changes under the request."""
        for _ in range(MAX_ATTEMPTS):
            version = self.hint
            meta = self._meta.get(version) if version else None
            if meta is None:
                reply = self._call(mode, "", n, ())  # answers "stale" with the live version
            else:
                reply = self._call(mode, version, n, resolve(meta))
            status = reply[0]
            if status == b"ok" and meta is not None:
                return self._parse(reply, meta)
            if status == b"nolive":
                self.hint = ""
                raise NoLiveVersion(f"no version is published under prefix {self.layout.prefix!r} yet")
            live = reply[1].decode()
            self.meta(live)
            self.hint = live
        raise StoreError("the live version changed several times during the request; retry")

    def _call(self, mode: str, version: str, n: int, args: Sequence[str]) -> list:
        """EVALSHA of the script. Loads it when Redis lost it (restart: NOSCRIPT), and
        retries once on a broken connection (Redis restarted since it was opened)."""
        head = self._heads.get(mode)
        if head is None:
            head = self._heads[mode] = pack_arguments(("EVALSHA", self.sha, 0, mode, self.layout.prefix))
        packed = b"*%d\r\n" % (7 + len(args)) + head + pack_arguments((version, n, *args))
        reloaded = retried = False
        while True:
            try:
                return self.link.execute(packed)
            except NoScriptError:
                if reloaded:
                    raise
                self.client.script_load(self.source)
                reloaded = True
            except redis.ConnectionError:
                if retried:
                    raise
                retried = True
            except redis.ResponseError as error:
                found = _CORRUPT.search(str(error))
                if found:
                    raise StoreError(f"published data unreadable: {found.group(1)}") from None
                raise

    @staticmethod
    def _parse(reply: list, meta: Meta) -> ListResult:
        fallback = reply[3].decode()
        return ListResult(
            version=reply[1].decode(),
            meta=meta,
            source=reply[2].decode(),
            fallback=fallback or None,
            known=reply[4].decode(),
            items_json=reply[5],
            segment=(reply[6].decode() or None) if len(reply) > 6 else None,
        )

    # ------------------------------------------------------------------ per endpoint
    def user(
        self,
        user_id: str,
        n: int,
        model: Callable[[Meta], str],
        *,
        category: str | None = None,
        exclude: Sequence[str] = (),
        exclude_recent: bool = True,
        fallback: bool = True,
    ) -> ListResult:
        """Top-``n`` for a user from the model ``model(meta)`` names; unknown users get the
        popular list (of ``category``) when ``fallback``; lists are filled up from it. In a
        version with segments, a user of a segment gets (and is filled up from) that
        segment's popular list first. Every entry carries its ``reason``."""
        head = ["1" if category is not None else "0", category or "", "1" if exclude_recent else "0"]

        def arguments(meta: Meta) -> list[str]:
            mode = ("segment" if meta.segments else "1") if fallback else "0"
            name = model(meta)
            return [name, user_id, *head, mode, meta.reason("user", name), meta.reason("popular"), *exclude]

        return self.read("user", n, arguments)

    def similar(self, item_id: str, n: int, models: Callable[[Meta], Sequence[str]]) -> ListResult:
        """Items similar to ``item_id`` from the first of ``models(meta)`` that has a list."""
        return self.read("similar", n, lambda meta: [item_id, *models(meta)])

    def together(self, item_id: str, n: int) -> ListResult:
        """Bought-together entries (confidence, lift) of ``item_id``."""
        return self.read("together", n, lambda meta: [item_id])

    def basket(self, item_ids: Sequence[str], n: int) -> ListResult:
        """What to add to a basket: the basket's bought-together lists merged."""
        return self.read("basket", n, lambda meta: list(item_ids))

    def popular(self, n: int, category: Callable[[Meta], str]) -> ListResult:
        """Popular items overall or of the category ``category(meta)`` returns ("" = overall)."""
        return self.read("popular", n, lambda meta: [category(meta)])
