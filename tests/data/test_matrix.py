"""Known answers for the matrix builders, and cross-checks against a plain pandas groupby."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from recsys.data.idmap import IdMap
from recsys.data.matrix import (
    Weighting,
    build_baskets,
    build_ratings,
    build_user_items,
    encode_columns,
    event_weights,
    item_trending,
)

DAY = 86_400
T0 = 1_700_000_000


def events() -> pd.DataFrame:
    rows = [
        ("u1", "a", "view", 1.0, T0, "s1", None),
        ("u1", "a", "purchase", 2.0, T0 + 10, "s1", "o1"),
        ("u1", "b", "add_to_cart", 1.0, T0 + 5, "s1", None),
        ("u2", "c", "impression", np.nan, T0, "s2", None),
        ("u2", "b", "rating", 4.0, T0 - 2 * DAY, "s3", None),
        ("u2", "a", "rating", 2.0, T0 - 2 * DAY, "s3", None),
        ("u2", "a", "rating", 4.0, T0 - DAY, "s3", None),
        ("u3", "c", "wishlist", np.nan, T0 - 10 * DAY, "s4", None),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "value", "timestamp", "session_id", "order_id"])
    return frame.astype({"user_id": "str", "item_id": "str", "event_type": "str", "session_id": "str", "order_id": "str"})


USERS = IdMap(["u1", "u2", "u3"])
ITEMS = IdMap(["a", "b", "c"])


def dense(matrix: sp.csr_matrix) -> np.ndarray:
    return matrix.toarray().astype(np.float64)


def test_default_weights_sum_per_pair() -> None:
    matrix = build_user_items(events(), USERS, ITEMS)
    assert matrix.shape == (3, 3) and matrix.dtype == np.float32
    # u1/a: view 1 + purchase 5; u1/b: cart 3; u2/a: two ratings x 1; u2/b: 1; u2/c impression 0; u3/c unknown type 1
    np.testing.assert_allclose(dense(matrix), [[6, 3, 0], [2, 1, 0], [0, 0, 1]])
    assert matrix.nnz == 5  # the impression-only pair is not stored
    assert matrix.has_sorted_indices


def test_custom_event_weights_and_default_weight() -> None:
    weighting = Weighting(event_weights={"view": 2.0, "purchase": 10.0}, default_weight=0.5)
    np.testing.assert_allclose(
        dense(build_user_items(events(), USERS, ITEMS, weighting)), [[12, 0.5, 0], [1, 0.5, 0.5], [0, 0, 0.5]]
    )


def test_use_values_multiplies_by_value_and_missing_value_counts_once() -> None:
    weighting = Weighting(use_values=True)
    # u1/a: view 1x1 + purchase 5x2; u2/a: ratings 2 + 4; u3/c: value NaN -> x1
    np.testing.assert_allclose(dense(build_user_items(events(), USERS, ITEMS, weighting)), [[11, 3, 0], [6, 4, 0], [0, 0, 1]])


def test_time_decay_halves_per_half_life() -> None:
    weighting = Weighting(half_life_days=1.0, reference_time=T0)
    weights = event_weights(events(), weighting)
    # age 0 (future events clip to 0), 2 days -> 1/4, 1 day -> 1/2, 10 days -> 2**-10
    np.testing.assert_allclose(weights, [1, 5, 3, 0, 0.25, 0.25, 0.5, 2.0**-10])


def test_decay_reference_defaults_to_newest_event() -> None:
    weights = event_weights(events(), Weighting(half_life_days=10.0))
    newest = T0 + 10
    expected_u3 = 0.5 ** ((newest - (T0 - 10 * DAY)) / DAY / 10.0)
    assert weights[7] == pytest.approx(expected_u3)
    assert weights[1] == pytest.approx(5.0)


def test_rating_threshold_drops_low_ratings_only() -> None:
    weighting = Weighting(rating_threshold=3.5)
    matrix = dense(build_user_items(events(), USERS, ITEMS, weighting))
    # u2/a: ratings 2 (dropped) and 4 (kept); u2/b: 4 kept; purchases untouched
    np.testing.assert_allclose(matrix, [[6, 3, 0], [1, 1, 0], [0, 0, 1]])


def test_rating_threshold_without_event_types_uses_rows_with_values() -> None:
    frame = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"], "value": [5.0, 1.0, np.nan]})
    matrix = dense(build_user_items(frame, USERS, ITEMS, Weighting(rating_threshold=3)))
    np.testing.assert_allclose(matrix, [[1, 0, 0], [1, 0, 0], [0, 0, 0]])


def test_binary_marks_every_positive_pair() -> None:
    matrix = build_user_items(events(), USERS, ITEMS, Weighting(binary=True))
    np.testing.assert_array_equal(dense(matrix), [[1, 1, 0], [1, 1, 0], [0, 0, 1]])


def test_unknown_ids_are_ignored() -> None:
    matrix = build_user_items(events(), IdMap(["u2"]), IdMap(["a", "z"]))
    np.testing.assert_allclose(dense(matrix), [[2, 0]])


def test_weighting_is_validated() -> None:
    with pytest.raises(ValidationError, match="event weights must be >= 0"):
        Weighting(event_weights={"view": -1.0})
    with pytest.raises(ValidationError):
        Weighting(half_life_days=0)
    with pytest.raises(ValidationError):
        Weighting(unknown_key=1)  # type: ignore[call-arg]


def test_ratings_average_repeated_ratings() -> None:
    ratings = build_ratings(events(), USERS, ITEMS)
    assert ratings is not None and ratings.dtype == np.float32
    np.testing.assert_allclose(dense(ratings), [[0, 0, 0], [3, 4, 0], [0, 0, 0]])


def test_ratings_none_without_values_or_rating_events() -> None:
    assert build_ratings(events().drop(columns="value"), USERS, ITEMS) is None
    no_ratings = events()[events()["event_type"] != "rating"]
    assert build_ratings(no_ratings, USERS, ITEMS) is None


def test_baskets_prefer_order_id_and_key_by_user() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2", "u1"],
            "item_id": ["a", "b", "a", "c", "a", "c"],
            "order_id": ["o1", "o1", "o1", "o1", "o1", "o2"],
            "event_type": ["purchase"] * 5 + ["view"],
        }
    )
    baskets = build_baskets(frame, ITEMS)
    assert baskets is not None and baskets.dtype == np.float32
    # (u1, o1) = {a, b}; (u2, o1) = {c, a}: same order id, different users, two baskets
    np.testing.assert_array_equal(dense(baskets), [[1, 1, 0], [1, 0, 1], [0, 0, 1]])
    purchases = build_baskets(frame, ITEMS, event_types=("purchase",))
    assert purchases is not None
    np.testing.assert_array_equal(dense(purchases), [[1, 1, 0], [1, 0, 1]])


def test_baskets_fall_back_to_sessions_and_none_without_columns() -> None:
    frame = events()
    baskets = build_baskets(frame, ITEMS, basket_columns=("session_id",))
    assert baskets is not None
    np.testing.assert_array_equal(dense(baskets), [[1, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 1]])
    assert build_baskets(frame.drop(columns=["order_id", "session_id"]), ITEMS) is None
    empty = build_baskets(frame, ITEMS, event_types=("nothing",))
    assert empty is not None and empty.shape == (0, 3)


def test_trending_decays_and_windows() -> None:
    trending = item_trending(events(), ITEMS, half_life_days=1.0, window_days=5.0)
    assert trending is not None and trending.dtype == np.float32
    newest = T0 + 10
    age = lambda ts: (newest - ts) / DAY  # noqa: E731
    expected_a = 1 * 0.5 ** age(T0) + 5 * 0.5 ** age(T0 + 10) + 0.5 ** age(T0 - 2 * DAY) + 0.5 ** age(T0 - DAY)
    expected_b = 3 * 0.5 ** age(T0 + 5) + 0.5 ** age(T0 - 2 * DAY)
    # c: impression weight 0; the 'wishlist' event is 10 days old, outside the window
    np.testing.assert_allclose(trending, [expected_a, expected_b, 0.0], rtol=1e-6)
    assert item_trending(events().drop(columns="timestamp"), ITEMS) is None


def test_encoded_columns_give_identical_matrices() -> None:
    frame = events()
    encoded = encode_columns(frame)
    assert isinstance(encoded["user_id"].dtype, pd.CategoricalDtype)
    assert frame["user_id"].dtype == "str"  # the caller's frame is untouched
    for weighting in (Weighting(), Weighting(rating_threshold=3.0, use_values=True), Weighting(binary=True)):
        a = build_user_items(frame, USERS, ITEMS, weighting)
        b = build_user_items(encoded, USERS, ITEMS, weighting)
        assert (a != b).nnz == 0
    assert (build_ratings(frame, USERS, ITEMS) != build_ratings(encoded, USERS, ITEMS)).nnz == 0
    np.testing.assert_array_equal(item_trending(frame, ITEMS), item_trending(encoded, ITEMS))
    assert (build_baskets(frame, ITEMS) != build_baskets(encoded, ITEMS)).nnz == 0


def test_matches_pandas_groupby_on_random_events() -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    types = np.array(["view", "add_to_cart", "purchase", "rating", "other"])
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 300, n).astype(str),
            "item_id": rng.integers(0, 200, n),  # integer ids: same as their strings
            "event_type": types[rng.integers(0, 5, n)],
            "value": rng.integers(1, 6, n).astype(float),
            "timestamp": T0 - rng.integers(0, 60 * DAY, n),
        }
    )
    weighting = Weighting(half_life_days=14.0, use_values=True, rating_threshold=2.5)
    users = IdMap.from_values(frame["user_id"])
    items = IdMap.from_values(frame["item_id"])
    matrix = build_user_items(frame, users, items, weighting)

    base = frame["event_type"].map({**weighting.event_weights}).fillna(weighting.default_weight)
    low_rating = (frame["event_type"] == "rating") & (frame["value"] < 2.5)
    decay = 0.5 ** ((frame["timestamp"].max() - frame["timestamp"]) / DAY / 14.0)
    frame["w"] = np.where(low_rating, 0.0, base * frame["value"] * decay)
    expected = frame.groupby(["user_id", "item_id"])["w"].sum()
    expected = expected[expected != 0]
    rows = users.to_index(expected.index.get_level_values(0).to_numpy())
    cols = items.to_index(expected.index.get_level_values(1).astype(str).to_numpy())
    want = sp.csr_matrix((expected.to_numpy(), (rows, cols)), shape=matrix.shape)
    np.testing.assert_allclose(dense(matrix), want.toarray(), rtol=1e-5)
    assert matrix.nnz == want.nnz
