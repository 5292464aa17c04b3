from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.dataset import Dataset, align_catalog, save_dataset_maps
from recsys.data.idmap import IdMap
from recsys.data.matrix import Weighting


def interactions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u2", "u1", "u2", "u3"],
            "item_id": ["b", "a", "a", "c"],
            "event_type": ["purchase", "view", "rating", "view"],
            "value": [1.0, 1.0, 4.0, 1.0],
            "timestamp": [1_700_000_000, 1_700_000_100, 1_700_000_200, 1_700_000_300],
            "order_id": ["o1", None, None, None],
            "session_id": ["s1", "s2", "s1", "s3"],
        }
    ).astype({"user_id": "str", "item_id": "str", "event_type": "str", "order_id": "str", "session_id": "str"})


def catalog() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["c", "z", "a", "a"],
            "title": ["Cee", "Zed", "old title", "Ay"],
            "category": ["x", "y", "x", "x"],
            "price": [1.5, None, 2.0, 3.0],
            "in_stock": pd.array([True, False, None, True], dtype="boolean"),
        }
    )


def test_from_interactions_builds_aligned_matrices() -> None:
    data = Dataset.from_interactions(interactions(), catalog())
    assert data.users.ids.tolist() == ["u2", "u1", "u3"]  # first appearance
    assert data.items.ids.tolist() == ["b", "a", "c", "z"]  # catalogue-only item appended
    assert data.user_items.shape == (3, 4)
    assert data.user_items[:, 3].nnz == 0  # the cold item has an empty column
    np.testing.assert_allclose(data.user_items.toarray(), [[5, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    assert data.ratings is not None and data.ratings[0, 1] == pytest.approx(4.0)
    assert data.baskets is not None and data.baskets.shape[1] == 4
    assert data.trending is not None and data.trending.shape == (4,)
    assert data.info["interactions"] == 4


def test_catalog_is_aligned_to_item_order_with_defaults() -> None:
    data = Dataset.from_interactions(interactions(), catalog())
    cat = data.catalog
    assert cat is not None
    assert cat["item_id"].tolist() == ["b", "a", "c", "z"]
    assert cat["title"].tolist() == ["", "Ay", "Cee", "Zed"]  # last duplicate row wins, missing item -> ""
    assert np.isnan(cat["price"].iloc[0]) and cat["price"].iloc[1] == 3.0
    assert cat["in_stock"].tolist() == [True, True, True, False]
    assert cat["description"].tolist() == ["", "", "", ""]


def test_given_maps_fix_the_index_space() -> None:
    users = IdMap(["u1", "u2", "u3", "u4"])
    items = IdMap(["a", "b", "c"])
    data = Dataset.from_interactions(interactions(), users=users, items=items)
    assert data.user_items.shape == (4, 3)
    assert data.user_items[3].nnz == 0
    assert data.user_items[1, 1] == pytest.approx(5.0)


def test_same_result_for_integer_ids_and_their_strings() -> None:
    frame = interactions()
    numeric = frame.assign(user_id=frame["user_id"].str[1:].astype(int), item_id=frame["item_id"].map({"a": 1, "b": 2, "c": 3}))
    data = Dataset.from_interactions(numeric)
    assert data.users.ids.tolist() == ["2", "1", "3"]
    assert data.items.ids.tolist() == ["2", "1", "3"]
    reference = Dataset.from_interactions(frame)
    assert (data.user_items != reference.user_items).nnz == 0


def test_object_columns_with_mixed_types_still_work() -> None:
    frame = interactions().astype({"user_id": object})
    frame.loc[1, "user_id"] = 1  # an int among strings
    data = Dataset.from_interactions(frame)
    assert data.users.ids.tolist() == ["u2", "1", "u3"]


def test_weighting_is_passed_through() -> None:
    data = Dataset.from_interactions(interactions(), weighting=Weighting(binary=True))
    assert set(data.user_items.data.tolist()) == {1.0}


def test_shape_checks() -> None:
    data = Dataset.from_interactions(interactions())
    with pytest.raises(ValueError, match="user_items has shape"):
        Dataset(user_items=data.user_items, users=IdMap(["u1"]), items=data.items)
    with pytest.raises(ValueError, match="catalog has"):
        Dataset(user_items=data.user_items, users=data.users, items=data.items, catalog=catalog())


def test_fingerprint_changes_with_the_data() -> None:
    a = Dataset.from_interactions(interactions())
    b = Dataset.from_interactions(interactions())
    c = Dataset.from_interactions(interactions().iloc[:3])
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert len(a.fingerprint()) == 16


def test_from_matrix_and_saved_maps(tmp_path: Path) -> None:
    data = Dataset.from_matrix(np.eye(3))
    assert data.users.ids.tolist() == ["0", "1", "2"]
    save_dataset_maps(data, tmp_path / "model")
    assert IdMap.load(tmp_path / "model" / "items.npz") == data.items


def test_align_catalog_without_optional_columns() -> None:
    aligned = align_catalog(pd.DataFrame({"item_id": [2, 1]}), IdMap(["1", "2", "3"]))
    assert aligned["item_id"].tolist() == ["1", "2", "3"]
    assert aligned["title"].tolist() == ["", "", ""]
    assert aligned["in_stock"].tolist() == [True, True, True]
