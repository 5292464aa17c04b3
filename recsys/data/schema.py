"""Column names and event types of the interaction and catalogue tables.

Every loader returns tables with these column names. Raw ids are always strings
(``"42"`` and ``42`` are the same id), so they round-trip unchanged to Redis and the API.
"""

from __future__ import annotations

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

# Event types a shop logs; any other string is accepted and weighted 1.0 unless configured.
VIEW: Final = "view"
ADD_TO_CART: Final = "add_to_cart"
PURCHASE: Final = "purchase"
RATING: Final = "rating"
CLICK: Final = "click"
IMPRESSION: Final = "impression"
REMOVE_FROM_CART: Final = "remove_from_cart"
CANCEL: Final = "cancel"

KNOWN_EVENT_TYPES: Final = frozenset(
    {VIEW, ADD_TO_CART, PURCHASE, RATING, CLICK, IMPRESSION, REMOVE_FROM_CART, CANCEL}
)

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
