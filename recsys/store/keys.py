"""The Redis key layout: the one contract between the publisher and the API.

Every key starts with a prefix (``recsys:`` by default, ``RECSYS_KEY_PREFIX``), so several
deployments or test runs can share one Redis database without touching each other.

Published lists live in an immutable *version* namespace; one string key names the live
version. A reader that reads ``live`` and then its lists inside one Lua script (or MULTI)
sees one version whole: the old one or the new one, never a mix.

Keys (``{p}`` is the prefix, ``{v}`` a version id):

=============================  ======  =====================================================
key                            type    content
=============================  ======  =====================================================
``{p}live``                    string  id of the live version
``{p}versions``                zset    completed version ids, scored by publish time (unix s)
``{p}pending``                 zset    versions being written, scored by start time; what is
                                       left here by a killed publish is removed by the next one
``{p}publish-lock``            string  held (SET NX PX) by the one publisher writing now
``{p}v:{v}:meta``              string  JSON: version metadata (see ``VersionMeta`` below)
``{p}v:{v}:user:{model}``      hash    user id -> list blob (top-N for that user)
``{p}v:{v}:similar:{model}``   hash    item id -> list blob (similar items)
``{p}v:{v}:together``          hash    item id -> list blob with confidence and lift
``{p}v:{v}:popular``           hash    category -> list blob; field ``""`` is overall
``{p}v:{v}:catalog``           hash    item id -> JSON {title, category, price, in_stock}
``{p}v:{v}:appearances``       hash    item id -> JSON {model: number of user lists holding it}
``{p}v:{v}:segment-of``        hash    user id -> segment id (``[segments]`` runs only)
``{p}v:{v}:segment-popular``   hash    segment id -> list blob (popular in that segment)
``{p}v:{v}:segment-names``     hash    segment id -> segment name (``[segments]`` runs only)
``{p}v:{v}:because-items``     hash    because code (its characters in the user-list blobs'
                                       ``"b"``, recsys/store/codec.py) -> the reason as the API
                                       returns it: JSON {"type": "because", "item_id", "title"}
``{p}audience:{name}``         zset    user id -> propensity score (``recsys propensity
                                       --publish NAME``), replaced whole by RENAME
``{p}audience:{name}:meta``    string  JSON {name, target, horizon_days, cutoffs, auc, k,
                                       size, created_at}
``{p}audience-tmp:{name}:{t}`` zset    an audience being written (renamed into place)
``{p}ab:experiments``          hash    experiment name -> JSON definition
``{p}events``                  stream  logged events (bounded, see ``EVENTS_MAXLEN``)
``{p}recent:{user}``           zset    item ids the user just interacted with -> unix time
``{p}event-id:{id}``           string  an ``event_id`` already stored (expires after
                                       ``EVENT_ID_TTL_SECONDS``): a retried batch is not
                                       stored twice
``{p}events-added``            string  count of entries ever added to the events stream
                                       (XINFO's ``entries-added`` exists only from Redis 7)
``{p}forgotten``               hash    sha256 of a forgotten user id -> unix time of the
                                       erasure (tombstones, applied by every training run)
``{p}forgotten:disk``          set     tombstones whose run folders and event archive are
                                       still to be scrubbed (erasures asked through the API)
``{p}items:overlay``           hash    item id -> JSON {"set": {field: value}, "base":
                                       {field: catalogue-file value}, "at": unix time}
``{p}events:archive-lock``     string  held (SET NX PX) by the one archiver or erasure
                                       rewriting the event archive now
=============================  ======  =====================================================

Each entry of the events stream has the string fields ``type`` (one of
``recsys.data.schema.EVENT_TYPES``: view, click, add_to_cart, remove_from_cart, purchase,
rating, impression), ``user_id``, ``session_id``, ``item_id``, ``value``,
``timestamp`` (unix seconds), ``recommendation_id`` and ``event_id`` (the client's id of
the event, for idempotent retries); a missing value is ``""``.

Version metadata (``{p}v:{v}:meta``) is a JSON object with at least::

    {"version": str, "created_at": float, "run": str,
     "user_models": [str], "similar_models": [str], "default_model": str,
     "has_together": bool, "has_popular": bool, "categories": [str],
     "list_length": {"user": int, "similar": int, "together": int, "popular": int},
     "counts": {...}}

and, from a run folder, ``"default_reason"`` (why the default model is served) and
``"selection"`` (the candidates' holdout scores, recsys.pipeline.selection). A version with
segments has ``"segments": {segment id: name}``, ``"segment_sizes": {segment id: customers}``,
``"segment_details": {segment id: {"centroid", "top_categories"}}`` and ``list_length.segment``.
A version published with explanations has ``"reasons"``: list name (``user:{model}``,
``popular``, ``segment``) -> the reason type of its entries without a because item
(``personalized``, ``similar_users``, ``popular``, ``trending``; recsys/store/codec.py); the
API assumes :func:`~recsys.store.codec.default_reason` for lists it does not name.

recommend.lua builds the per-version names above from the prefix itself (the version is
only known once ``live`` is read): ``popular``, ``segment-of``, ``segment-popular``,
``segment-names``, ``because-items`` ... must
be changed in both places.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_PREFIX = "recsys:"
PREFIX_ENV = "RECSYS_KEY_PREFIX"

#: Upper bound of the events stream (XADD MAXLEN ~): at about 200 bytes an event, ~200 MB.
EVENTS_MAXLEN = 1_000_000
#: How many recent items per user are kept for real-time exclusion, and for how long.
RECENT_MAX_ITEMS = 200
RECENT_TTL_SECONDS = 7 * 24 * 3600

#: How long an ``event_id`` is remembered: a retry within this time is recognised.
EVENT_ID_TTL_SECONDS = 7 * 24 * 3600

EVENT_FIELDS = ("type", "user_id", "session_id", "item_id", "value", "timestamp", "recommendation_id")

OVERALL = ""  # field of the popular hash holding the overall list

#: Optional stream field: a client-chosen id that makes an event unique (archived once).
EVENT_ID_FIELD = "event_id"


def default_prefix() -> str:
    return os.environ.get(PREFIX_ENV, DEFAULT_PREFIX)


@dataclass(frozen=True)
class KeyLayout:
    """Builds every key name from one prefix."""

    prefix: str = DEFAULT_PREFIX

    @classmethod
    def from_env(cls) -> KeyLayout:
        return cls(default_prefix())

    # global keys
    @property
    def live(self) -> str:
        return f"{self.prefix}live"

    @property
    def versions(self) -> str:
        return f"{self.prefix}versions"

    @property
    def pending(self) -> str:
        return f"{self.prefix}pending"

    @property
    def publish_lock(self) -> str:
        return f"{self.prefix}publish-lock"

    @property
    def experiments(self) -> str:
        return f"{self.prefix}ab:experiments"

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    def recent(self, user_id: str) -> str:
        return f"{self.prefix}recent:{user_id}"

    def event_id(self, event_id: str) -> str:
        return f"{self.prefix}event-id:{event_id}"

    @property
    def events_added(self) -> str:
        return f"{self.prefix}events-added"

    def user_keys(self, user_id: str) -> list[str]:
        """Every key held for one user alone (removed when the user is forgotten)."""
        return [self.recent(user_id)]

    def user_field_hashes(self) -> list[str]:
        """Hashes with one field per user id (stored assignments, overrides...), whose field
        of a forgotten user is removed."""
        return []

    @property
    def forgotten(self) -> str:
        return f"{self.prefix}forgotten"

    @property
    def forgotten_disk(self) -> str:
        return f"{self.prefix}forgotten:disk"

    @property
    def item_overlay(self) -> str:
        return f"{self.prefix}items:overlay"

    @property
    def archive_lock(self) -> str:
        return f"{self.prefix}events:archive-lock"

    def audience(self, name: str) -> str:
        return f"{self.prefix}audience:{name}"

    def audience_meta(self, name: str) -> str:
        return f"{self.prefix}audience:{name}:meta"

    def audience_tmp(self, name: str, token: str) -> str:
        return f"{self.prefix}audience-tmp:{name}:{token}"

    def _escaped_prefix(self) -> str:
        return "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)

    def audience_pattern(self) -> str:
        """SCAN pattern of every published audience zset (and its meta key)."""
        return f"{self._escaped_prefix()}audience:*"

    def segment_of_pattern(self) -> str:
        """SCAN pattern of every version's user -> segment hash."""
        return f"{self._escaped_prefix()}v:*:segment-of"

    def user_list_pattern(self) -> str:
        """SCAN pattern of every per-user list hash of every version (glob-escaped prefix)."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)
        return f"{escaped}v:*:user:*"

    # per-version keys
    def version_root(self, version: str) -> str:
        return f"{self.prefix}v:{version}:"

    def version_pattern(self, version: str) -> str:
        """SCAN pattern that matches every key of one version."""
        return f"{self.version_root(version)}*"

    def meta(self, version: str) -> str:
        return f"{self.version_root(version)}meta"

    def user_recs(self, version: str, model: str) -> str:
        return f"{self.version_root(version)}user:{model}"

    def similar(self, version: str, model: str) -> str:
        return f"{self.version_root(version)}similar:{model}"

    def together(self, version: str) -> str:
        return f"{self.version_root(version)}together"

    def popular(self, version: str) -> str:
        return f"{self.version_root(version)}popular"

    def appearances(self, version: str) -> str:
        return f"{self.version_root(version)}appearances"

    def catalog(self, version: str) -> str:
        return f"{self.version_root(version)}catalog"

    def segment_of(self, version: str) -> str:
        return f"{self.version_root(version)}segment-of"

    def segment_popular(self, version: str) -> str:
        return f"{self.version_root(version)}segment-popular"

    def segment_names(self, version: str) -> str:
        return f"{self.version_root(version)}segment-names"

    def because_items(self, version: str) -> str:
        return f"{self.version_root(version)}because-items"
