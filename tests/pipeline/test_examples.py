"""The example configurations in examples/, one per shape of export, each run on a small
fixture written here; and the Online Retail sample end to end (skipped when absent).

Each example is copied beside its fixture (its relative paths are relative to the file),
so what runs is the file shops are told to start from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import redis
from click.testing import CliRunner, Result

from recsys.cli.main import cli
from recsys.runs.folder import RunFolder
from recsys.pipeline.config import load_config
from recsys.store.codec import decode_list
from recsys.store.keys import KeyLayout

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"


def invoke(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def example(name: str, folder: Path) -> Path:
    target = folder / name
    shutil.copy(EXAMPLES / name, target)
    return target


def test_every_example_is_a_valid_configuration() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.toml"))
    assert names == ["counts.toml", "online-retail.toml", "ratings.toml"]
    for name in names:
        load_config(EXAMPLES / name)


# ------------------------------------------------------------------ online retail
def retail_lines(rng: np.random.Generator) -> list[str]:
    """60 invoices of 10 customers plus guests and cancellations; items 1 and 2 are often
    bought together, and every item has one dominant description and a later price."""
    lines = ["InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"]
    titles = {f"2{k:04d}": f"ITEM NUMBER {k}" for k in range(12)}
    for invoice in range(60):
        customer = "" if invoice % 10 == 9 else str(12000 + invoice % 10)
        items = ["20001", "20002"] if invoice % 3 == 0 else list(rng.choice(sorted(titles), size=2, replace=False))
        day = 1 + invoice % 28
        for item in items:
            price = "2.50" if invoice < 50 else "2.95"
            lines.append(f"{536000 + invoice},{item},{titles[item]},{1 + invoice % 4},{1 + invoice % 12}/{day}/2011 9:{invoice % 60:02d},{price},{customer},United Kingdom")
    lines.append("C536999,20001,ITEM NUMBER 1,-2,12/9/2011 9:00,2.95,12001,United Kingdom")
    lines.append("537000,20001,item number one (misspelt),1,12/9/2011 9:05,2.95,12002,United Kingdom")
    return lines


def test_online_retail_example_publishes_together_lists_and_titles(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    config = example("online-retail.toml", tmp_path)
    data = tmp_path / "invoices.csv"
    data.write_text("\n".join(retail_lines(np.random.default_rng(0))) + "\n", encoding="utf-8")

    stats = json.loads(invoke("data", "stats", str(data), "--config", str(config), "--json").output)
    guest_lines = sum(2 for invoice in range(60) if invoice % 10 == 9)
    assert stats["validation"]["files"][0]["dropped"] == {"missing_user": guest_lines, "cancelled": 1}
    assert stats["users"] == 9 and stats["orders"] == 60 - 6 + 1

    trained = invoke("train", "--config", str(config), "--data", str(data), "--out", str(tmp_path / "runs"))
    assert f"dropped: missing_user {guest_lines}, cancelled 1" in trained.output

    store = ["--redis", redis_url, "--prefix", key_prefix]
    published = json.loads(
        invoke("pipeline", "--config", str(config), "--data", str(data), "--out", str(tmp_path / "runs"), *store, "--json").output
    )
    layout = KeyLayout(key_prefix)
    version = published["version"]
    together = decode_list(redis_client.hget(layout.together(version), "20001"))
    assert together["i"][0] == "20002" and together["c"][0] > 0.5
    entry = orjson.loads(redis_client.hget(layout.catalog(version), "20001"))
    assert entry["title"] == "ITEM NUMBER 1"  # the most frequent description, not the last one
    assert entry["price"] == pytest.approx(2.95)  # the last line's price


# ------------------------------------------------------------------------ ratings
def test_ratings_example_reads_european_dates_prices_and_stock_counts(tmp_path: Path) -> None:
    config = example("ratings.toml", tmp_path)
    rng = np.random.default_rng(1)
    items = [f"SKU-{k}" for k in range(40)]
    rows = ["reviewer;sku;stars;reviewed_on"]
    for reviewer in range(60):
        for sku in rng.choice(items, size=8, replace=False):
            rows.append(f"r-{reviewer};{sku};{rng.integers(1, 6)};{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/2015")
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    departments = ["coffee", "tea", "kitchen"]
    products = ["sku;name;department;price;stock"]
    for k, sku in enumerate(items):
        products.append(f"{sku};Product {k};{departments[k % 3]};€ {k + 1},90;{k % 4}")
    (tmp_path / "products.csv").write_text("\n".join(products) + "\n", encoding="utf-8")

    stats = json.loads(invoke("data", "stats", "--config", str(config), "--json").output)
    assert stats["interactions"] == 480 and stats["validation"]["dropped"] == {}
    assert stats["catalog_items"] == 40 and stats["out_of_stock"] == 10 and stats["categories"] == 3

    run_dir = Path(json.loads(invoke("train", "--config", str(config), "--out", str(tmp_path / "runs"), "--json").output)["run_dir"])
    metadata = RunFolder(run_dir).metadata
    assert metadata["counts"]["ratings"] == 480 and metadata["counts"]["catalog_items"] == 40
    assert metadata["skipped"] == {}
    popular = [entry for entry in metadata["lists"] if entry["kind"] == "popular"][0]
    assert popular["rows"] == 1 + 3  # overall and one per department: category=coffee has a list
    catalog = RunFolder(run_dir).catalog()
    assert catalog is not None and "price" in catalog.column_names
    assert catalog.num_rows == 40 and catalog["price"].null_count == 0


def test_train_warns_loudly_when_many_catalogue_rows_are_dropped(tmp_path: Path) -> None:
    # 101 of 120 catalogue rows were once dropped with exit code 0 and not a word from train.
    config = example("ratings.toml", tmp_path)
    rows = ["reviewer;sku;stars;reviewed_on"] + [f"r-{k % 9};SKU-{k};5;01/02/2015" for k in range(120)]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    products = ["sku;name;department;price;stock"]
    products += [f"SKU-{k};Product {k};coffee;3,50;{'plenty' if k < 101 else k}" for k in range(120)]
    (tmp_path / "products.csv").write_text("\n".join(products) + "\n", encoding="utf-8")
    result = invoke("train", "--config", str(config), "--out", str(tmp_path / "runs"))
    assert "products.csv (catalog): 120 rows, 19 kept; dropped: unparseable 101" in result.stdout
    assert "WARNING: " in result.stderr and "101 of 120 catalogue rows dropped (84%" in result.stderr
    run_dir = Path(result.stdout.split(": ", 1)[1].splitlines()[0])
    assert "101 of 120" in RunFolder(run_dir).metadata["validation"]["warnings"][0]
    strict = tmp_path / "strict.toml"
    strict.write_text(config.read_text().replace('validation = "lenient"', 'validation = "strict"'), encoding="utf-8")
    failed = CliRunner().invoke(cli, ["train", "--config", str(strict), "--out", str(tmp_path / "runs")])
    assert failed.exit_code != 0 and "cannot read 'plenty' as in stock or not" in str(failed.exception)


# ------------------------------------------------------------------------- counts
def test_counts_example_weights_by_counts_in_evaluate_and_train(tmp_path: Path) -> None:
    config = example("counts.toml", tmp_path)
    rng = np.random.default_rng(2)
    rows = ["listener,artist,plays"]
    for listener in range(80):
        for artist in rng.choice(30, size=6, replace=False):
            # artist 0 is played by few listeners, but a thousand times by each
            plays = 1000 if artist == 0 else int(rng.integers(1, 4))
            rows.append(f"l-{listener},a-{artist},{plays}")
    (tmp_path / "plays.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    def evaluate(*extra: str) -> dict:
        output = invoke("evaluate", "--config", str(config), "--models", "popular", "--param", "popular.mode=weight",
                        "--k", "1", "--json", "-", *extra).output  # fmt: skip
        return json.loads(output)

    by_counts = evaluate()
    by_events = evaluate("--no-use-values")
    assert by_counts["weighting"]["use_values"] is True and by_counts["weighting"]["value_transform"] == "log"
    assert by_events["weighting"]["use_values"] is False
    assert by_counts["models"]["popular"] != by_events["models"]["popular"]
    tuned = json.loads(invoke("tune", "itemknn", "--config", str(config), "--param", "k=5,10", "--json", "-").output)
    assert len(tuned["trials"]) == 2 and tuned["dataset"]["interactions"] == 480

    run_dir = Path(json.loads(invoke("train", "--config", str(config), "--out", str(tmp_path / "runs"), "--json").output)["run_dir"])
    metadata = RunFolder(run_dir).metadata
    assert metadata["counts"]["ratings"] == 0  # counts are not taken for ratings
    assert metadata["config"]["weighting"]["use_values"] is True


# ----------------------------------------------------------- the real Online Retail sample
@pytest.fixture(scope="module")
def online_retail(datasets_dir: Path) -> Path:
    path = datasets_dir / "online-retail-sample" / "online_retail_sample.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_online_retail_sample_stats_agree_with_pandas(online_retail: Path) -> None:
    stats = json.loads(invoke("data", "stats", str(online_retail), "--config", str(EXAMPLES / "online-retail.toml"), "--json").output)
    raw = pd.read_csv(online_retail, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str})
    guests = raw["CustomerID"].isna()
    cancelled = ~guests & (raw["InvoiceNo"].str.startswith("C") | (raw["Quantity"] < 0))
    kept = raw[~guests & ~cancelled].drop_duplicates()
    dropped = stats["validation"]["files"][0]["dropped"]
    assert dropped["missing_user"] == int(guests.sum()) == 10_057  # the datasets README's figure
    assert dropped["cancelled"] == int(cancelled.sum())
    assert stats["interactions"] == len(kept)
    assert stats["users"] == kept["CustomerID"].nunique()
    assert stats["items"] == kept["StockCode"].nunique()
    assert stats["orders"] == kept["InvoiceNo"].nunique()
    assert stats["catalog_items"] == raw["StockCode"].nunique() == 3227


def test_online_retail_sample_pipeline_publishes_bought_together_and_titles(
    online_retail: Path, tmp_path: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    config = EXAMPLES / "online-retail.toml"
    store = ["--redis", redis_url, "--prefix", key_prefix]
    out = invoke("pipeline", "--config", str(config), "--data", str(online_retail), "--out", str(tmp_path / "runs"), *store, "--json").output
    published = json.loads(out)
    version = published["version"]
    layout = KeyLayout(key_prefix)

    raw = pd.read_csv(online_retail, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str})
    lines = raw[raw["CustomerID"].notna() & ~raw["InvoiceNo"].str.startswith("C") & (raw["Quantity"] >= 0)]
    baskets = lines.groupby("InvoiceNo")["StockCode"].apply(set)
    # Each bought-together suggestion shares an invoice with its item.
    together = redis_client.hgetall(layout.together(version))
    assert len(together) > 1000
    busiest = lines["StockCode"].value_counts().index[:20]
    for item in busiest:
        suggested = decode_list(together.get(item.encode()))["i"]
        assert suggested, item
        for other in suggested:
            assert any(item in basket and other in basket for basket in baskets), (item, other)
    # Titles come from Description: the most frequent one of each item.
    catalog = redis_client.hgetall(layout.catalog(version))
    assert len(catalog) == raw["StockCode"].nunique()
    most_frequent = raw.dropna(subset=["Description"]).groupby("StockCode")["Description"].agg(lambda s: s.value_counts().index[0])
    for item in busiest:
        assert orjson.loads(catalog[item.encode()])["title"] == most_frequent[item].strip()
