"""The synthetic shop: deterministic, and with the structure models are meant to find."""

import numpy as np
import pandas as pd
import pytest

from recsys.data.generate import CATEGORIES, END_TIME, NEW_ARRIVAL_DAYS, generate_shop
from recsys.data.loaders import load_frames
from recsys.errors import ConfigError


@pytest.fixture(scope="module")
def shop() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_shop(users=1500, items=600, interactions=60_000, seed=5)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = generate_shop(200, 100, 3000, seed=1)
    b = generate_shop(200, 100, 3000, seed=1)
    c = generate_shop(200, 100, 3000, seed=2)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert not a[0].equals(c[0])


def test_shape_columns_and_dtypes(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = shop
    assert len(events) == 60_000 and len(catalog) == 600
    assert list(events.columns) == ["user_id", "item_id", "event_type", "value", "timestamp", "session_id", "order_id"]
    assert list(catalog.columns) == ["item_id", "title", "description", "category", "price", "in_stock"]
    assert events["timestamp"].dtype == np.int64 and events["user_id"].dtype == "str"
    assert catalog["in_stock"].dtype == bool
    assert catalog["item_id"].is_unique
    assert set(events["item_id"]) <= set(catalog["item_id"])


def test_passes_validation_without_a_dropped_row(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = shop
    data = load_frames(events, catalog, strict=True, now=END_TIME)
    assert data.report.ok
    assert len(data.interactions) == len(events)


def test_no_identical_events_even_where_the_log_ends() -> None:
    # A one-day log: many sessions run past the end and must be cut, not squeezed onto it.
    events, _ = generate_shop(users=300, items=50, interactions=30_000, seed=0, days=1)
    assert len(events) == 30_000
    assert events["timestamp"].max() < END_TIME
    assert not events.duplicated().any()


def test_event_funnel_sessions_and_orders(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, _ = shop
    counts = events["event_type"].value_counts()
    assert set(counts.index) == {"view", "add_to_cart", "purchase"}
    assert counts["view"] > 3 * counts["add_to_cart"] > 3 * counts["purchase"] / 2
    is_purchase = events["event_type"] == "purchase"
    assert events.loc[is_purchase, "order_id"].notna().all()
    assert events.loc[~is_purchase, "order_id"].isna().all()
    assert events["session_id"].notna().all()
    # An order belongs to one user and one session, and orders often hold several items.
    orders = events[is_purchase]
    assert (orders.groupby("order_id")[["user_id", "session_id"]].nunique() == 1).all().all()
    sizes = orders.groupby("order_id").size()
    assert (sizes > 1).mean() > 0.4
    # Every purchase was put in the cart in the same session first.
    carts = events[events["event_type"] == "add_to_cart"]
    first_cart = carts.groupby(["session_id", "item_id"])["timestamp"].min().rename("timestamp_cart").reset_index()
    bought = orders.merge(first_cart, on=["session_id", "item_id"], how="left")
    assert len(bought) == len(orders)
    assert (bought["timestamp_cart"] <= bought["timestamp"]).all()


def test_time_range_and_order(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, _ = shop
    ts = events["timestamp"].to_numpy()
    assert np.all(np.diff(ts) >= 0)
    assert ts.min() >= END_TIME - 180 * 86400 and ts.max() < END_TIME
    # Traffic grows over time: the last month is busier than the first.
    first = (ts < END_TIME - 150 * 86400).sum()
    last = (ts >= END_TIME - 30 * 86400).sum()
    assert last > first


def test_every_user_appears_and_activity_is_long_tailed(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, _ = shop
    per_user = events.groupby("user_id").size()
    assert len(per_user) == 1500
    assert per_user.max() > 10 * per_user.median()


def test_item_popularity_is_long_tailed_with_cold_items(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = shop
    per_item = events.groupby("item_id").size().sort_values(ascending=False)
    top_share = per_item.iloc[: len(per_item) // 10].sum() / per_item.sum()
    assert top_share > 0.4  # the top 10% of items get a large share of events
    cold = set(catalog["item_id"]) - set(events["item_id"])
    assert len(cold) >= 0.05 * len(catalog) * 0.9
    assert 0.03 < (~catalog["in_stock"]).mean() < 0.15


def test_users_concentrate_on_their_favourite_categories(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = shop
    category = events["item_id"].map(catalog.set_index("item_id")["category"])

    def top3_share(categories: pd.Series) -> float:
        counts = pd.crosstab(events["user_id"], categories)
        active = counts[counts.sum(axis=1) >= 15]
        top3 = np.sort(active.to_numpy(), axis=1)[:, -3:].sum(axis=1)
        return float(np.mean(top3 / active.sum(axis=1).to_numpy()))

    observed = top3_share(category)
    shuffled = top3_share(pd.Series(np.random.default_rng(0).permutation(category.to_numpy()), index=category.index))
    assert observed > 0.85
    assert observed > shuffled + 0.25


def test_items_bought_together_share_or_complement_categories(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = shop
    category_of = catalog.set_index("item_id")["category"]
    complement = {c.name: c.complement for c in CATEGORIES}
    orders = events[events["event_type"] == "purchase"][["order_id", "item_id"]]
    pairs = orders.merge(orders, on="order_id")
    pairs = pairs[pairs["item_id_x"] < pairs["item_id_y"]]
    a = pairs["item_id_x"].map(category_of).to_numpy()
    b = pairs["item_id_y"].map(category_of).to_numpy()
    related = (a == b) | (pd.Series(a).map(complement).to_numpy() == b) | (pd.Series(b).map(complement).to_numpy() == a)
    assert related.mean() > 0.85
    # Against random pairs of purchased items, the relation is far weaker.
    rng = np.random.default_rng(0)
    ra = rng.permutation(a)
    random_related = (ra == b) | (pd.Series(ra).map(complement).to_numpy() == b) | (pd.Series(b).map(complement).to_numpy() == ra)
    assert related.mean() > random_related.mean() + 0.4
    # Some item pairs are bought together again and again (companions).
    assert pairs.groupby(["item_id_x", "item_id_y"]).size().max() >= 10


def test_new_arrivals_only_sell_recently(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, _ = shop
    first_seen = events.groupby("item_id")["timestamp"].min()
    recent_only = first_seen[first_seen >= END_TIME - NEW_ARRIVAL_DAYS * 86400]
    assert len(recent_only) >= 5
    last_month = events[events["timestamp"] >= END_TIME - NEW_ARRIVAL_DAYS * 86400]
    share = last_month["item_id"].isin(recent_only.index).mean()
    assert share > 0.02


def test_catalog_text_comes_from_the_category_vocabulary(shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    _, catalog = shop
    vocab = {c.name: c for c in CATEGORIES}
    for row in catalog.head(50).itertuples():
        category = vocab[row.category]
        assert any(noun in row.title for noun in category.nouns)
        assert sum(feature in row.description for feature in category.features) >= 3
    assert (catalog["price"] > 0).all()
    assert catalog["category"].nunique() == len(CATEGORIES)


def test_small_shops_and_bad_arguments() -> None:
    events, catalog = generate_shop(users=3, items=2, interactions=5, seed=0)
    assert len(events) == 5 and len(catalog) == 2
    with pytest.raises(ConfigError, match="items must be >= 2"):
        generate_shop(users=3, items=1, interactions=5)
    with pytest.raises(ConfigError, match="users must be >= 1"):
        generate_shop(users=0, items=10, interactions=5)
