"""Column names and event types of the interaction and catalogue tables.

Every loader returns tables with these column names. Raw ids are always strings
(``"42"`` and ``42`` are the same id), so they round-trip unchanged to Redis and the API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

USER_ID: Final = "user_id"
ITEM_ID: Final = "item_id"
EVENT_TYPE: Final = "event_type"
VALUE: Final = "value"
TIMESTAMP: Final = "timestamp"  # int64 unix seconds
SESSION_ID: Final = "session_id"
ORDER_ID: Final = "order_id"

INTERACTION_REQUIRED: Final = (USER_ID, ITEM_ID)
INTERACTION_OPTIONAL: Final = (EVENT_TYPE, VALUE, TIMESTAMP, SESSION_ID, ORDER_ID)
INTERACTION_COLUMNS: Final = INTERACTION_REQUIRED + INTERACTION_OPTIONAL

TITLE: Final = "title"
DESCRIPTION: Final = "description"
CATEGORY: Final = "category"
PRICE: Final = "price"
IN_STOCK: Final = "in_stock"

CATALOG_REQUIRED: Final = (ITEM_ID,)
CATALOG_OPTIONAL: Final = (TITLE, DESCRIPTION, CATEGORY, PRICE, IN_STOCK)
CATALOG_COLUMNS: Final = CATALOG_REQUIRED + CATALOG_OPTIONAL

# Event types a shop logs. EVENT_TYPES is the one vocabulary of the engine: the batch job
# weights them ([weighting] event_weights) and ``POST /v1/events`` accepts exactly these
# (plus the shop's own names mapped onto them). Offline, any other string is kept and
# weighted by ``default_weight``; ``cancel`` marks a cancelled line (dropped and counted).
VIEW: Final = "view"
ADD_TO_CART: Final = "add_to_cart"
PURCHASE: Final = "purchase"
RATING: Final = "rating"
CLICK: Final = "click"
IMPRESSION: Final = "impression"
REMOVE_FROM_CART: Final = "remove_from_cart"
CANCEL: Final = "cancel"

EVENT_TYPES: Final = (VIEW, CLICK, ADD_TO_CART, REMOVE_FROM_CART, PURCHASE, RATING, IMPRESSION)
KNOWN_EVENT_TYPES: Final = frozenset({*EVENT_TYPES, CANCEL})

# Spellings of the known event types seen in shop logs -> schema name (after lower-casing
# and turning spaces and hyphens into "_"; every rename is reported).
EVENT_TYPE_ALIASES: Final[Mapping[str, str]] = {
    "addtocart": ADD_TO_CART,
    "add_to_basket": ADD_TO_CART,
    "cart": ADD_TO_CART,
    "removefromcart": REMOVE_FROM_CART,
    "remove_from_basket": REMOVE_FROM_CART,
    "transaction": PURCHASE,
    "buy": PURCHASE,
    "order": PURCHASE,
    "pageview": VIEW,
    "page_view": VIEW,
    "detail": VIEW,
}


def canonical_event_type(name: str, mapping: Mapping[str, str] | None = None) -> str:
    """The engine's name for an event type as a shop writes it.

    ``mapping`` (``[data.event_types]``: the shop's name -> ours) is looked up first, as
    written and then lower-cased; then the name is lower-cased, spaces and hyphens become
    ``_`` and :data:`EVENT_TYPE_ALIASES` apply. Names that match nothing come back
    normalised (callers decide whether an unknown type is allowed).
    """
    text = name.strip()
    if mapping:
        if text in mapping:
            return mapping[text]
        lowered = {key.lower(): value for key, value in mapping.items()}
        if text.lower() in lowered:
            return lowered[text.lower()]
    normal = re.sub(r"[\s\-]+", "_", text.lower())
    return EVENT_TYPE_ALIASES.get(normal, normal)


DEFAULT_EVENT_WEIGHTS: Final[dict[str, float]] = {
    VIEW: 1.0,
    CLICK: 1.0,
    ADD_TO_CART: 3.0,
    PURCHASE: 5.0,
    RATING: 1.0,
    IMPRESSION: 0.0,
    REMOVE_FROM_CART: 0.0,
    CANCEL: 0.0,
}
