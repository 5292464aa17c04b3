from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.idmap import IdMap


def test_ids_are_strings_in_given_order() -> None:
    ids = IdMap(["b", "a", "c"])
    assert ids.ids.dtype.kind == "U"
    assert ids.ids.tolist() == ["b", "a", "c"]
    assert len(ids) == 3
    assert ids.index_of("a") == 1


def test_integer_and_string_ids_are_the_same_id() -> None:
    ids = IdMap.from_values([42, 7, 42])
    assert ids.ids.tolist() == ["42", "7"]
    assert "42" in ids and 42 in ids
    assert ids.index_of(7) == 1


def test_from_values_keeps_first_appearance_order() -> None:
    values = pd.Series(["u3", "u1", "u3", "u2", "u1"], dtype="str")
    assert IdMap.from_values(values).ids.tolist() == ["u3", "u1", "u2"]


def test_duplicates_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate ids"):
        IdMap(["a", "b", "a"])


def test_to_index_and_to_raw_round_trip_with_unknowns() -> None:
    ids = IdMap(["x", "y", "z"])
    idx = ids.to_index(["z", "nope", "x"])
    assert idx.dtype == np.int64
    assert idx.tolist() == [2, -1, 0]
    assert ids.to_raw(idx).tolist() == ["z", "", "x"]
    assert ids.to_raw(np.array([[0, 1], [2, -1]])).tolist() == [["x", "y"], ["z", ""]]


def test_index_of_unknown_names_the_id() -> None:
    with pytest.raises(KeyError, match="'missing'"):
        IdMap(["a"]).index_of("missing")


def test_empty_map() -> None:
    ids = IdMap([])
    assert len(ids) == 0
    assert ids.to_index(["a"]).tolist() == [-1]
    assert ids.to_raw(np.array([-1])).tolist() == [""]


def test_extend_appends_only_unseen_ids() -> None:
    ids = IdMap(["a", "b"])
    bigger = ids.extend(["c", "a", "d", "c"])
    assert bigger.ids.tolist() == ["a", "b", "c", "d"]
    assert ids.ids.tolist() == ["a", "b"]  # the original is unchanged


def test_save_and_load_without_pickle(tmp_path: Path) -> None:
    ids = IdMap(["ü-1", "42", "item with space"])
    path = tmp_path / "items.npz"
    ids.save(path)
    with np.load(path, allow_pickle=False) as data:
        assert data["ids"].dtype.kind == "U"
    assert IdMap.load(path) == ids
    assert IdMap.load(path) != IdMap(["42"])
