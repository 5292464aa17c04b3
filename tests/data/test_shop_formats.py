"""Shops' own exports: column mapping, date formats, cancellations, guest lines, stock
counts, prices with currency signs, catalogues made from the lines, counts as weights.

Each test writes its own small fixture; the failures they reproduce were seen on real
exports (column names of the shop's own, ``31/07/2015`` and ``12/1/2010 8:26`` dates, a
stock count refused line by line).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.cli.main import main
from recsys.data import validation as v
from recsys.data.dataset import Dataset
from recsys.data.loaders import describe, load
from recsys.data.mapping import DataMapping
from recsys.data.matrix import Weighting, event_weights
from recsys.errors import DataError

NOW = 1_800_000_000.0
RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
RETAIL_LINES = [
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom",
    "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom",
    "536366,22633,HAND WARMER UNION JACK,6,12/13/2010 8:28,1.85,17850,United Kingdom",
    "536367,85123A,WHITE HANGING HEART T-LIGHT HOLDER,32,12/13/2010 8:34,2.55,13047,United Kingdom",
    "536367,71053,WHITE METAL LANTERN,3,12/13/2010 8:34,3.39,13047,United Kingdom",
    "536368,22633,HAND WARMER UNION JACK,1,1/4/2011 10:00,1.85,,United Kingdom",  # guest
    "536369,71053,WHITE METAL LANTERN,1,1/4/2011 10:01,3.39,,France",  # guest
    "C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-1,1/5/2011 9:41,2.55,13047,United Kingdom",  # cancelled
    "536380,71053,WHITE MOTAL LANTERN,2,1/6/2011 9:41,3.50,12583,France",  # a typo, a new price
    "536381,22633,HAND WARMER UNION JACK,-3,1/7/2011 9:41,1.85,12583,France",  # a return without the C
]
RETAIL = DataMapping(
    columns={"user_id": "CustomerID", "item_id": "StockCode", "timestamp": "InvoiceDate", "order_id": "InvoiceNo", "value": "Quantity"},
    catalog_columns={"title": "Description", "price": "UnitPrice"},
    default_event_type="purchase",
    timestamp_format="%m/%d/%Y %H:%M",
    cancellations={"order_id_prefix": "C", "negative_value": True},
)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def retail_file(tmp_path: Path) -> Path:
    return write(tmp_path, "online_retail.csv", "\n".join([RETAIL_HEADER, *RETAIL_LINES]) + "\n")


def unix(text: str, pattern: str) -> int:
    return int(datetime.strptime(text, pattern).replace(tzinfo=UTC).timestamp())


# ------------------------------------------------------------------ column mapping
def test_without_a_mapping_the_shops_columns_are_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="field 'item_id': required column missing"):
        load(retail_file(tmp_path), now=NOW)


def test_mapped_invoice_lines_count_guests_and_cancellations_by_reason(tmp_path: Path) -> None:
    data = load(retail_file(tmp_path), now=NOW, mapping=RETAIL)
    frame = data.interactions
    report = data.report.files[0]
    assert report.dropped == {v.MISSING_USER: 2, v.CANCELLED: 2}
    assert frame["user_id"].tolist() == ["17850", "17850", "17850", "13047", "13047", "12583"]
    assert frame["item_id"].tolist() == ["85123A", "71053", "22633", "85123A", "71053", "71053"]
    assert set(frame["event_type"]) == {"purchase"}
    assert frame["order_id"].tolist() == ["536365", "536365", "536366", "536367", "536367", "536380"]
    assert frame["value"].tolist() == [6, 6, 6, 32, 3, 2]
    assert frame["timestamp"].iloc[2] == unix("12/13/2010 8:28", "%m/%d/%Y %H:%M")
    figures = describe(data)
    assert (figures["users"], figures["items"], figures["interactions"], figures["orders"]) == (3, 3, 6, 4)
    assert figures["validation"]["files"][0]["dropped"] == {"missing_user": 2, "cancelled": 2}


def test_catalogue_from_the_lines_most_frequent_title_and_last_price(tmp_path: Path) -> None:
    data = load(retail_file(tmp_path), now=NOW, mapping=RETAIL)
    catalog = data.catalog.set_index("item_id")
    # "WHITE METAL LANTERN" on 4 lines beats the one-off typo; the price is the last line's.
    assert catalog.loc["71053", "title"] == "WHITE METAL LANTERN"
    assert catalog.loc["71053", "price"] == pytest.approx(3.50)
    assert catalog.loc["85123A", "title"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert sorted(catalog.index) == ["22633", "71053", "85123A"]  # guests' and cancelled lines' items too
    assert data.source.catalog.endswith("(catalogue fields on its lines)")
    assert any("most frequent" in note for note in data.report.files[1].notes)


def test_a_mapped_column_that_is_absent_is_named_with_the_header(tmp_path: Path) -> None:
    mapping = RETAIL.model_copy(update={"columns": RETAIL.columns.model_copy(update={"user_id": "Customer ID"})})
    with pytest.raises(DataError) as caught:
        load(retail_file(tmp_path), now=NOW, mapping=mapping)
    message = str(caught.value)
    assert "column 'Customer ID' (data.columns.user_id) is not in the file" in message
    assert RETAIL_HEADER.replace(",", ", ") in message and "did you mean 'CustomerID'" in message


def test_order_id_may_be_the_combination_of_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "visits.csv", "customer,product,day\nc1,a,2024-01-01\nc1,b,2024-01-01\nc1,c,2024-01-02\nc2,a,\n")
    mapping = DataMapping(columns={"user_id": "customer", "item_id": "product", "order_id": ["customer", "day"]})
    data = load(path, now=NOW, mapping=mapping)
    orders = data.interactions["order_id"]
    assert orders[:3].tolist() == ["c1|2024-01-01", "c1|2024-01-01", "c1|2024-01-02"] and orders.isna()[3]
    dataset = Dataset.from_interactions(data.interactions)
    assert dataset.baskets.shape[0] == 2 and dataset.baskets[0].nnz == 2


def test_shop_event_names_are_mapped(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "visitor,sku,what\nu1,a,pv\nu1,b,PURCHASE\nu2,a,Add-To-Cart\nu2,b,basket_out\n")
    mapping = DataMapping(
        columns={"user_id": "visitor", "item_id": "sku", "event_type": "what"},
        event_types={"pv": "view", "basket_out": "remove_from_cart"},
    )
    data = load(path, now=NOW, mapping=mapping)
    assert data.interactions["event_type"].tolist() == ["view", "purchase", "add_to_cart", "remove_from_cart"]


# ---------------------------------------------------------------------- dates
@pytest.mark.parametrize(
    ("values", "suggestion"),
    [
        (["31/07/2015", "01/08/2015", "15/08/2015"], '"%d/%m/%Y"'),
        (["12/1/2010 8:26", "12/13/2010 9:01", "1/4/2011 10:00"], '"%m/%d/%Y %H:%M"'),
    ],
)
def test_unknown_date_formats_fail_loudly_with_a_suggestion_even_when_lenient(
    tmp_path: Path, values: list[str], suggestion: str
) -> None:
    rows = [f"u{k},i{k},{value}" for k, value in enumerate(values)]
    path = write(tmp_path, "events.csv", "\n".join(["user_id,item_id,when", *rows]) + "\n")
    mapping = DataMapping(columns={"timestamp": "when"})
    with pytest.raises(DataError) as caught:
        load(path, now=NOW, mapping=mapping)
    message = str(caught.value)
    assert f"{path}, line 2, field 'when'" in message
    assert f"3 of 3 timestamps cannot be read, e.g. {values[0]!r}" in message
    assert "data.timestamp_format" in message and suggestion in message


def test_a_strptime_pattern_reads_the_dates(tmp_path: Path) -> None:
    path = write(tmp_path, "events.csv", "user_id,item_id,when\nu1,i1,31/07/2015\nu2,i2,01/08/2015\nu3,i3,32/08/2015\n")
    mapping = DataMapping(columns={"timestamp": "when"}, timestamp_format="%d/%m/%Y")
    data = load(path, now=NOW, mapping=mapping)
    assert data.interactions["timestamp"].tolist() == [unix("31/07/2015", "%d/%m/%Y"), unix("01/08/2015", "%d/%m/%Y")]
    assert data.report.dropped == {v.UNPARSEABLE: 1}
    assert "timestamp_format '%d/%m/%Y'" in data.report.files[0].issues[0].message
    with pytest.raises(DataError, match=r"line 4, field 'when': cannot parse '32/08/2015'"):
        load(path, now=NOW, mapping=mapping, strict=True)


def test_unix_seconds_and_iso_need_no_pattern(tmp_path: Path) -> None:
    path = write(tmp_path, "events.csv", "user_id,item_id,timestamp\nu1,i1,1700000000\nu2,i2,2023-11-14T22:13:20Z\n")
    assert load(path, now=NOW).interactions["timestamp"].tolist() == [1_700_000_000, 1_700_000_000]


# ------------------------------------------------------------------- catalogue
def test_stock_counts_and_shop_words_are_read_none_dropped(tmp_path: Path) -> None:
    # 120 items with a stock count: it was refused line by line ("cannot read 3 as true/false").
    counts = [3, 0, 12, 1, 250, 0] * 20
    lines = [f"i{k},Coffee {k},coffee,{count}" for k, count in enumerate(counts)]
    catalog = write(tmp_path, "catalog.csv", "\n".join(["item_id,title,category,stock", *lines]) + "\n")
    events = write(tmp_path, "events.csv", "user_id,item_id\n" + "".join(f"u{k % 7},i{k}\n" for k in range(120)))
    data = load(events, catalog=catalog, now=NOW)
    assert data.report.files[1].dropped == {} and not data.report.warnings
    assert data.catalog["in_stock"].tolist() == [c > 0 for c in counts]
    assert set(data.catalog["title"].str[:6]) == {"Coffee"}

    words = ["yes", "no", "Y", "n", "1", "0", "TRUE", "false", "in stock", "out of stock"]
    lines = [f"w{k},{word}" for k, word in enumerate(words)]
    data = load(events, catalog=write(tmp_path, "words.csv", "item_id,in_stock\n" + "\n".join(lines) + "\n"), now=NOW)
    assert data.catalog["in_stock"].tolist() == [True, False] * 5


def test_prices_with_currency_signs_and_decimal_commas(tmp_path: Path) -> None:
    prices = ["3.50", "£3.50", "3,50 €", "EUR 1.234,50", "$1,234.50", "1 234,50", "12", "1,234", "cheap"]
    lines = [f'p{k},"{price}"' for k, price in enumerate(prices)]
    catalog = write(tmp_path, "catalog.csv", "item_id,price\n" + "\n".join(lines) + "\n")
    events = write(tmp_path, "events.csv", "user_id,item_id\nu1,p0\n")
    data = load(events, catalog=catalog, now=NOW)
    assert data.catalog["price"].tolist() == [3.5, 3.5, 3.5, 1234.5, 1234.5, 1234.5, 12.0]
    report = data.report.files[1]
    assert report.dropped == {v.UNPARSEABLE: 2}
    messages = {issue.line: issue.message for issue in report.issues}
    assert "'1,234'" in messages[9] and "data.decimal_separator" in messages[9]
    assert "cannot parse 'cheap' as a price" in messages[10]
    # Told that "," separates thousands, 1,234 is read.
    told = load(events, catalog=catalog, now=NOW, mapping=DataMapping(decimal_separator="."))
    assert told.catalog.set_index("item_id").loc["p7", "price"] == 1234.0


def test_too_many_dropped_catalogue_rows_warn_loudly_or_fail_strict(tmp_path: Path) -> None:
    lines = [f"i{k},{'maybe' if k < 10 else 'yes'}" for k in range(100)]
    catalog = write(tmp_path, "catalog.csv", "item_id,in_stock\n" + "\n".join(lines) + "\n")
    events = write(tmp_path, "events.csv", "user_id,item_id\nu1,i50\n")
    data = load(events, catalog=catalog, now=NOW)
    (warning,) = data.report.warnings
    assert "10 of 100 catalogue rows dropped (10%, above data.max_dropped_share = 5%)" in warning
    assert "unparseable: 10" in warning and "WARNING: " + warning in data.report.lines()
    assert load(events, catalog=catalog, now=NOW, mapping=DataMapping(max_dropped_share=0.2)).report.warnings == []
    with pytest.raises(DataError, match=r"line 2, field 'in_stock': cannot read 'maybe' as in stock or not"):
        load(events, catalog=catalog, now=NOW, strict=True)


# -------------------------------------------------------------- counts as weights
def test_log_value_transform_known_answers() -> None:
    frame = pd.DataFrame({"user_id": ["u"] * 4, "item_id": list("abcd"), "value": [1.0, 3.0, 1023.0, np.nan]})
    linear = event_weights(frame, Weighting(use_values=True))
    damped = event_weights(frame, Weighting(use_values=True, value_transform="log"))
    assert linear.tolist() == [1.0, 3.0, 1023.0, 1.0]
    assert damped.tolist() == pytest.approx([1.0, 2.0, 10.0, 1.0])
    assert event_weights(frame, Weighting()).tolist() == [1.0] * 4


def test_data_commands_take_the_mapping_from_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).resolve().parents[2] / "examples" / "online-retail.toml"
    path = retail_file(tmp_path)
    main(["data", "stats", str(path), "--config", str(config), "--json"])
    figures = json.loads(capsys.readouterr().out)
    assert (figures["users"], figures["items"], figures["interactions"]) == (3, 3, 6)
    assert figures["validation"]["files"][0]["dropped"] == {"missing_user": 2, "cancelled": 2}
    assert figures["catalog_items"] == 3

    with pytest.raises(SystemExit) as done:
        main(["data", "validate", str(path)])
    assert done.value.code == 1
    assert "required column missing" in capsys.readouterr().err
