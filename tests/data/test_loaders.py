"""Loaders: CSV, Parquet, folders and both MovieLens formats on small files written here."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.loaders import describe, detect_format, load
from recsys.errors import ConfigError, DataError

NOW = 1_720_000_000


def events_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3"],
            "item_id": ["i1", "i2", "i1", "i3"],
            "event_type": ["view", "purchase", "add_to_cart", "view"],
            "value": [1.0, 2.0, 1.0, 1.0],
            "timestamp": [1_700_000_000, 1_700_000_100, 1_700_000_200, 1_700_000_300],
            "session_id": ["s1", "s1", "s2", "s3"],
            "order_id": [None, "o1", None, None],
        }
    )


def catalog_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4"],
            "title": ["One", "Two", "Three", "Four"],
            "description": ["first", "second", "third", "cold item"],
            "category": ["a", "a", "b", "b"],
            "price": [1.0, 2.5, 3.0, 4.0],
            "in_stock": [True, False, True, True],
        }
    )


def check_events(frame: pd.DataFrame) -> None:
    expected = events_frame()
    assert frame["user_id"].tolist() == expected["user_id"].tolist()
    assert frame["item_id"].tolist() == expected["item_id"].tolist()
    assert frame["event_type"].tolist() == expected["event_type"].tolist()
    assert frame["timestamp"].tolist() == expected["timestamp"].tolist()
    assert frame["order_id"].isna().tolist() == [True, False, True, True]
    assert frame["timestamp"].dtype == np.int64


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_folder_with_interactions_and_catalog(tmp_path: Path, fmt: str) -> None:
    if fmt == "csv":
        events_frame().to_csv(tmp_path / "interactions.csv", index=False)
        catalog_frame().to_csv(tmp_path / "catalog.csv", index=False)
    else:
        events_frame().to_parquet(tmp_path / "interactions.parquet", index=False)
        catalog_frame().to_parquet(tmp_path / "catalog.parquet", index=False)
    assert detect_format(tmp_path) == fmt
    for chosen in ("auto", fmt):
        data = load(tmp_path, chosen, now=NOW)
        check_events(data.interactions)
        assert data.source.format == fmt
        assert data.source.catalog == str(tmp_path / f"catalog.{fmt}")
        assert data.catalog is not None
        assert data.catalog["in_stock"].tolist() == [True, False, True, True]
        assert data.catalog["price"].tolist() == [1.0, 2.5, 3.0, 4.0]
        assert data.report.ok and len(data.report.files) == 2


def test_single_files_and_catalog_option(tmp_path: Path) -> None:
    events_frame().to_csv(tmp_path / "log.csv", index=False)
    catalog_frame().to_parquet(tmp_path / "items.parquet", index=False)
    data = load(tmp_path / "log.csv", catalog=tmp_path / "items.parquet", now=NOW)
    check_events(data.interactions)
    assert data.catalog is not None and len(data.catalog) == 4
    assert data.source.interactions == str(tmp_path / "log.csv")
    with pytest.raises(DataError, match="no such catalogue file"):
        load(tmp_path / "log.csv", catalog=tmp_path / "missing.csv")


def test_gzip_tsv_and_semicolon_files(tmp_path: Path) -> None:
    text = events_frame().to_csv(index=False)
    with open(tmp_path / "a.csv.gz", "wb") as handle:
        handle.write(gzip.compress(text.encode()))
    check_events(load(tmp_path / "a.csv.gz", now=NOW).interactions)
    events_frame().to_csv(tmp_path / "b.tsv", index=False, sep="\t")
    check_events(load(tmp_path / "b.tsv", now=NOW).interactions)
    events_frame().to_csv(tmp_path / "c.csv", index=False, sep=";")
    data = load(tmp_path / "c.csv", now=NOW)
    check_events(data.interactions)
    assert "separator ';' detected" in data.report.files[0].notes


def test_format_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown data format 'xml'"):
        load(tmp_path, "xml")
    with pytest.raises(DataError, match="no such file or folder"):
        load(tmp_path / "nope")
    with pytest.raises(DataError, match="folder holds no interactions.csv"):
        load(tmp_path)
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(DataError, match="cannot tell the format"):
        load(tmp_path / "data.json")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="broken.parquet: cannot read as Parquet"):
        load(tmp_path / "broken.parquet")
    with pytest.raises(DataError, match="no interactions.parquet"):
        load(tmp_path, "parquet")


# ---------------------------------------------------------------- MovieLens 100K
GENRES = ["unknown", "Action", "Comedy", "Drama"]


def write_ml100k(folder: Path) -> Path:
    folder.mkdir()
    with open(folder / "u.data", "w") as handle:
        handle.write("1\t10\t5\t881250949\n2\t10\t3\t891717742\n1\t20\t4\t878887116\n2\t30\t1\t880606923\n")
    with open(folder / "u.genre", "w") as handle:
        handle.write("".join(f"{name}|{k}\n" for k, name in enumerate(GENRES)) + "\n")
    rows = [
        "10|Toy Story (1995)|01-Jan-1995||http://x|0|0|1|0",
        "20|Café Society (2016)|01-Jan-2016||http://y|0|1|1|1",
        "30|Unknown Film (1990)|01-Jan-1990||http://z|1|0|0|0",
    ]
    with open(folder / "u.item", "w", encoding="latin-1") as handle:
        handle.write("\n".join(rows) + "\n")
    return folder


def test_movielens_100k(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path / "ml")
    assert detect_format(folder) == "movielens-100k"
    assert detect_format(folder / "u.data") == "movielens-100k"
    data = load(folder, now=NOW)
    frame = data.interactions
    assert frame["user_id"].tolist() == ["1", "2", "1", "2"]
    assert frame["item_id"].tolist() == ["10", "10", "20", "30"]
    assert frame["event_type"].tolist() == ["rating"] * 4
    assert frame["value"].tolist() == [5.0, 3.0, 4.0, 1.0]
    assert frame["timestamp"].tolist() == [881250949, 891717742, 878887116, 880606923]
    catalog = data.catalog
    assert catalog is not None
    assert catalog["title"].tolist() == ["Toy Story (1995)", "Café Society (2016)", "Unknown Film (1990)"]
    assert catalog["category"].tolist() == ["Comedy", "Action", ""]
    assert catalog["description"].tolist() == ["Comedy", "Action, Comedy, Drama", ""]
    assert data.report.ok
    same = load(folder / "u.data", "movielens-100k", now=NOW)
    assert same.interactions.equals(frame)


def test_movielens_100k_bad_rows_name_line_and_column(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path / "ml")
    with open(folder / "u.data", "a") as handle:
        handle.write("3\t40\tfive\t881250949\n3\t40\t5\n")
    with open(folder / "u.item", "a", encoding="latin-1") as handle:
        handle.write("40|Broken (1999)|01-Jan-1999||http://w|0|2|0|0\n")
    data = load(folder, now=NOW)
    issues = [(i.file.rsplit("/", 1)[1], i.line, i.field) for i in data.report.issues]
    assert issues == [
        ("u.data", 5, "rating (column 3)"),
        ("u.data", 6, "timestamp (column 4)"),
        ("u.item", 4, "Action (column 7)"),
    ]
    with pytest.raises(DataError, match=r"u.data, line 5, field 'rating \(column 3\)': cannot parse 'five'"):
        load(folder, strict=True, now=NOW)


# ---------------------------------------------------------------- MovieLens latest
def write_ml_latest(folder: Path) -> Path:
    folder.mkdir()
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964981247\n2,1,0.5,1445714835\n"
    )
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children\n"
        '2,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Cold Movie (2001),(no genres listed)\n"
    )
    (folder / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n2,1,pixar,1445714994\n3,1,Pixar,1445714996\n2,1,fun,1445714992\n4,99,orphan,1445715000\n"
    )
    return folder


def test_movielens_latest_with_tags(tmp_path: Path) -> None:
    folder = write_ml_latest(tmp_path / "ml")
    assert detect_format(folder) == "movielens-latest"
    assert detect_format(folder / "ratings.csv") == "movielens-latest"
    data = load(folder, now=NOW)
    frame = data.interactions
    assert frame["user_id"].tolist() == ["1", "1", "2"]
    assert frame["value"].tolist() == [4.0, 3.5, 0.5]
    assert frame["event_type"].tolist() == ["rating"] * 3
    catalog = data.catalog
    assert catalog is not None
    assert catalog["title"].tolist()[1] == "American President, The (1995)"
    assert catalog["category"].tolist() == ["Adventure", "Comedy", ""]
    assert catalog["description"].tolist() == [
        "Adventure, Animation, Children; tags: pixar, fun",
        "Comedy, Drama, Romance",
        "",
    ]
    assert data.source.extra == [str(folder / "tags.csv")]
    tags_report = data.report.files[2]
    assert tags_report.table == "tags"
    assert any("1 tagged items are not in the catalogue" in note for note in tags_report.notes)
    figures = describe(data)
    assert (figures["users"], figures["items"], figures["interactions"], figures["catalog_items"], figures["cold_items"]) == (2, 2, 3, 3, 1)


def test_describe_figures(tmp_path: Path) -> None:
    events_frame().to_parquet(tmp_path / "interactions.parquet", index=False)
    catalog_frame().to_parquet(tmp_path / "catalog.parquet", index=False)
    figures = describe(load(tmp_path, now=NOW))
    assert figures["users"] == 3 and figures["items"] == 3 and figures["interactions"] == 4
    assert figures["pairs"] == 4 and figures["density"] == pytest.approx(4 / 9)
    assert figures["event_types"] == {"view": 2, "purchase": 1, "add_to_cart": 1}
    assert figures["time_range"]["first"] == "2023-11-14T22:13:20+00:00"
    assert figures["sessions"] == 3 and figures["orders"] == 1 and figures["mean_order_items"] == 1.0
    assert figures["catalog_items"] == 4 and figures["cold_items"] == 1 and figures["items_not_in_catalog"] == 0
    assert figures["categories"] == 2 and figures["out_of_stock"] == 1
    assert figures["interactions_per_user"] == {"min": 1, "median": 1.0, "mean": 1.333, "max": 2}


@pytest.mark.movielens
def test_real_movielens_100k(datasets_dir: Path) -> None:
    data = load(datasets_dir / "ml-100k", "movielens-100k")
    figures = describe(data)
    assert (figures["users"], figures["items"], figures["interactions"]) == (943, 1682, 100_000)
    assert figures["catalog_items"] == 1682 and data.report.ok


@pytest.mark.movielens
def test_real_movielens_latest_small(datasets_dir: Path) -> None:
    data = load(datasets_dir / "ml-latest-small", "movielens-latest")
    figures = describe(data)
    assert (figures["users"], figures["items"], figures["interactions"]) == (610, 9724, 100_836)
    assert figures["catalog_items"] == 9742 and data.report.ok
    assert data.catalog is not None and data.catalog["description"].str.contains("tags: ").sum() > 1000
