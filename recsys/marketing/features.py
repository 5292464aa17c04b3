"""Per-customer features from the interaction log: recency, frequency, monetary value, tenure
and category shares, all computed at a cut-off time from the history before it.

Purchases are the ``purchase`` events when the log has any; a log without event types (an
order export such as invoice lines) is all purchases. An order is ``order_id`` where given,
else the session, else the customer's calendar day. Spend is quantity x price: the quantity
is the ``value`` column when it holds positive numbers (units on an invoice line), else 1;
the price comes from the catalogue, and an item without a price counts 1 per unit, so that
a shop without prices still gets a spend-like figure (units bought).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.data import schema
from recsys.errors import DataError

DAY = 86_400.0
OTHER = "other"


@dataclass(frozen=True)
class Purchases:
    """Purchase lines, one per row: user_id, item_id, timestamp (unix s), order, quantity,
    amount (quantity x price) and category ("" when unknown)."""

    lines: pd.DataFrame
    has_prices: bool
    source_events: str  # "purchase" or "all"

    @property
    def start(self) -> float:
        return float(self.lines[schema.TIMESTAMP].min())

    @property
    def end(self) -> float:
        return float(self.lines[schema.TIMESTAMP].max())


def purchase_lines(interactions: pd.DataFrame, catalog: pd.DataFrame | None = None) -> Purchases:
    """The purchase lines of a validated interactions table (schema columns)."""
    if schema.TIMESTAMP not in interactions or interactions[schema.TIMESTAMP].isna().all():
        raise DataError(f"field '{schema.TIMESTAMP}': customer features need the time of every interaction")
    frame = interactions
    source = "all"
    if schema.EVENT_TYPE in frame and (frame[schema.EVENT_TYPE] == schema.PURCHASE).any():
        frame = frame[frame[schema.EVENT_TYPE] == schema.PURCHASE]
        source = "purchase"
    frame = frame[frame[schema.TIMESTAMP].notna()]
    if frame.empty:
        raise DataError("no purchases with a timestamp: nothing to describe customers by")
    user = frame[schema.USER_ID].astype(str).to_numpy()
    item = frame[schema.ITEM_ID].astype(str).to_numpy()
    timestamp = frame[schema.TIMESTAMP].to_numpy(dtype=np.float64)

    order = _order_keys(frame, user, timestamp)
    quantity = np.ones(len(frame))
    if schema.VALUE in frame:
        values = pd.to_numeric(frame[schema.VALUE], errors="coerce").to_numpy(dtype=np.float64)
        usable = np.isfinite(values) & (values > 0)
        quantity = np.where(usable, values, 1.0)
    price = np.ones(len(frame))
    category = np.full(len(frame), "", dtype=object)
    has_prices = False
    if catalog is not None and len(catalog):
        table = catalog.drop_duplicates(schema.ITEM_ID, keep="last")
        table = table.set_index(table[schema.ITEM_ID].astype(str))
        if schema.PRICE in table:
            prices = pd.to_numeric(table[schema.PRICE], errors="coerce").reindex(item).to_numpy(dtype=np.float64)
            has_prices = bool(np.isfinite(prices).any())
            price = np.where(np.isfinite(prices) & (prices >= 0), prices, 1.0)
        if schema.CATEGORY in table:
            category = table[schema.CATEGORY].astype("string").fillna("").reindex(item).fillna("").to_numpy(dtype=object)
    lines = pd.DataFrame(
        {
            schema.USER_ID: user,
            schema.ITEM_ID: item,
            schema.TIMESTAMP: timestamp,
            "order": order,
            "quantity": quantity,
            "amount": quantity * price,
            schema.CATEGORY: category.astype(str),
        }
    )
    return Purchases(lines, has_prices, source)


def _order_keys(frame: pd.DataFrame, user: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    day = (timestamp // DAY).astype(np.int64).astype(str)
    fallback = np.char.add(np.char.add(user.astype(str), "\x1f"), day)
    for column in (schema.ORDER_ID, schema.SESSION_ID):
        if column in frame:
            values = frame[column].astype("string")
            present = values.notna().to_numpy() & (values.fillna("").to_numpy(dtype=str) != "")
            if present.any():
                keys = np.char.add(np.char.add(user.astype(str), "\x1f#"), values.fillna("").to_numpy(dtype=str))
                return np.where(present, keys, fallback)
    return fallback


def top_categories(purchases: Purchases, k: int) -> list[str]:
    """The ``k`` categories with the most purchase lines (named ones only)."""
    counts = purchases.lines.loc[purchases.lines[schema.CATEGORY] != "", schema.CATEGORY].value_counts()
    return [str(c) for c in counts.index[:k]]


def customer_features(purchases: Purchases, cutoff: float | None = None, categories: list[str] | None = None) -> pd.DataFrame:
    """One row per customer with a purchase before ``cutoff`` (default: after the last one).

    Columns: recency_days (cut-off minus last purchase), frequency (orders), monetary
    (spend), tenure_days (cut-off minus first purchase), avg_order_value, lines, and
    ``share_<category>`` (share of the customer's lines) for each of ``categories`` plus
    ``share_other``. Indexed by user_id (str), sorted.
    """
    lines = purchases.lines
    if cutoff is None:
        cutoff = purchases.end + 1.0
    else:
        lines = lines[lines[schema.TIMESTAMP] < cutoff]
    if lines.empty:
        return pd.DataFrame(columns=["recency_days", "frequency", "monetary", "tenure_days", "avg_order_value", "lines"])
    grouped = lines.groupby(schema.USER_ID, sort=True)
    features = pd.DataFrame(
        {
            "recency_days": (cutoff - grouped[schema.TIMESTAMP].max()) / DAY,
            "frequency": grouped["order"].nunique().astype(np.float64),
            "monetary": grouped["amount"].sum(),
            "tenure_days": (cutoff - grouped[schema.TIMESTAMP].min()) / DAY,
            "lines": grouped.size().astype(np.float64),
        }
    )
    features["avg_order_value"] = features["monetary"] / features["frequency"]
    if categories:
        chosen = lines[schema.CATEGORY].where(lines[schema.CATEGORY].isin(categories), OTHER)
        shares = pd.crosstab(lines[schema.USER_ID], chosen, normalize="index")
        for name in [*categories, OTHER]:
            column = shares[name] if name in shares else 0.0
            features[f"share_{name}"] = pd.Series(column, index=shares.index).reindex(features.index).fillna(0.0)
    features.index = features.index.astype(str)
    features.index.name = schema.USER_ID
    return features
