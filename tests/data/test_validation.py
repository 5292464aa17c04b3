"""Validation: every reason, lenient and strict, with the line numbers a text editor shows."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data import validation as v
from recsys.data.loaders import load, load_frames
from recsys.errors import DataError

NOW = 1_720_000_000  # 2024-07-03
HEADER = "user_id,item_id,event_type,value,timestamp,session_id"


def write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return path


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


GOOD = "u1,i1,view,1,1700000000,s1"

# One row per reason, each on a known line (header = line 1).
BAD_ROWS = {
    3: (",i1,view,1,1700000000,s1", v.MISSING_USER, "user_id"),
    4: ("u1,,view,1,1700000000,s1", v.MISSING_ID, "item_id"),
    5: ("u1,i2,,1,1700000000,s1", v.MISSING_VALUE, "event_type"),
    6: ("u1,i2,view,abc,1700000000,s1", v.UNPARSEABLE, "value"),
    7: ("u1,i2,view,1,yesterday,s1", v.UNPARSEABLE, "timestamp"),
    8: ("u1,i2,view,1,,s1", v.MISSING_VALUE, "timestamp"),
    9: ("u1,i2,rating,,1700000000,s1", v.MISSING_VALUE, "value"),
    10: ("u1,i2,view,1,700000000,s1", v.TIMESTAMP_OUT_OF_RANGE, "timestamp"),
    11: ("u1,i2,view,1,1900000000,s1", v.TIMESTAMP_OUT_OF_RANGE, "timestamp"),
    12: ("u1,i2,purchase,-2,1700000000,s1", v.NEGATIVE_VALUE, "value"),
    13: ("u1,i2,return,1,1700000000,s1", v.CANCELLED, "event_type"),
    14: (GOOD, v.DUPLICATE, v.WHOLE_ROW),
    15: ("u1,i2,view,1,1700000000", v.MALFORMED_ROW, "session_id"),
    16: ("u1,i2,view,1,1700000000,s1,extra", v.MALFORMED_ROW, "(field 7, no such column)"),
}


def bad_file(tmp_path: Path) -> Path:
    rows = [GOOD] + [BAD_ROWS[line][0] for line in sorted(BAD_ROWS)] + ["u2,i3,rating,-1,1700000001,s2"]
    return write(tmp_path, csv_text(*rows))


def test_clean_file_passes_with_schema_dtypes(tmp_path: Path) -> None:
    path = write(tmp_path, csv_text(GOOD, "007,42,purchase,2,1700000100,s1"))
    data = load(path, now=NOW)
    assert data.report.ok and data.report.dropped == {}
    frame = data.interactions
    assert frame["user_id"].tolist() == ["u1", "007"]  # leading zeros kept: ids are strings
    assert frame["item_id"].tolist() == ["i1", "42"]
    assert frame["timestamp"].dtype == np.int64
    assert frame["value"].dtype == np.float64
    assert frame["user_id"].dtype == "str"
    assert list(frame.columns) == ["user_id", "item_id", "event_type", "value", "timestamp", "session_id"]


def test_lenient_counts_every_reason_and_names_line_and_field(tmp_path: Path) -> None:
    data = load(bad_file(tmp_path), now=NOW)
    expected: dict[str, int] = {}
    for _, reason, _ in BAD_ROWS.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert data.report.dropped == expected
    report = data.report.files[0]
    assert report.rows == 1 + len(BAD_ROWS) + 1
    assert report.kept == 2  # the good row and the negative *rating* (allowed)
    found = {(issue.line, issue.reason, issue.field) for issue in report.issues}
    assert found == {(line, reason, field) for line, (_, reason, field) in BAD_ROWS.items()}
    by_line = {issue.line: issue for issue in report.issues}
    assert "abc" in by_line[6].message
    assert "exact duplicate of line 2" in by_line[14].message
    assert "expected 6 fields, found 5" in by_line[15].message
    assert str(by_line[7]).startswith(f"{tmp_path / 'events.csv'}, line 7, field 'timestamp': ")


@pytest.mark.parametrize("line", sorted(line for line, (_, reason, _) in BAD_ROWS.items() if reason != v.CANCELLED))
def test_strict_raises_on_the_first_problem_with_file_line_field(tmp_path: Path, line: int) -> None:
    row, _, field = BAD_ROWS[line]
    rows = [GOOD, "u9,i9,view,1,1700000002,s9"]
    if BAD_ROWS[line][1] == v.DUPLICATE:
        rows = [GOOD, GOOD]
    else:
        rows.append(row)
    path = write(tmp_path, csv_text(*rows))
    where = 3 if BAD_ROWS[line][1] == v.DUPLICATE else 4
    with pytest.raises(DataError) as caught:
        load(path, strict=True, now=NOW)
    message = str(caught.value)
    assert message.startswith(f"{path}, line {where}, ")
    assert (f"field '{field}'" if field != v.WHOLE_ROW else v.WHOLE_ROW) in message
    assert "\n" not in message
    # Lenient mode keeps the good rows instead.
    assert len(load(path, now=NOW).interactions) == 2 if where == 4 else 1


def test_strict_reports_the_earliest_line_whatever_the_reason(tmp_path: Path) -> None:
    path = write(tmp_path, csv_text(GOOD, "u1,i2,view,1,1700000000", "u1,,view,1,1700000000,s1"))
    with pytest.raises(DataError, match=r"line 3, field 'session_id': expected 6 fields, found 5"):
        load(path, strict=True, now=NOW)


def test_line_numbers_after_quoted_newlines_blank_lines_and_crlf(tmp_path: Path) -> None:
    text = (
        "user_id,item_id,event_type,value,timestamp,session_id\r\n"
        '"u1","item, with comma",view,1,1700000000,"s\r\n1"\r\n'  # lines 2-3
        "\r\n"  # line 4, blank: skipped silently
        'u2,"say ""hi""",view,1,1700000000,s2\r\n'  # line 5
        "u3,i3,view,oops,1700000000,s3\r\n"  # line 6
        "u4,i4,view,1,1700000000\r\n"  # line 7, one field short
    )
    data = load(write(tmp_path, text), now=NOW)
    # A line break inside a session id breaks the id rule (the API could not serve it).
    assert data.interactions["item_id"].tolist() == ['say "hi"']
    assert data.interactions["session_id"].tolist() == ["s2"]
    lines = {issue.line: issue.reason for issue in data.report.issues}
    assert lines == {2: v.INVALID_ID, 6: v.UNPARSEABLE, 7: v.MALFORMED_ROW}


def test_quotes_inside_unquoted_fields_keep_line_numbers(tmp_path: Path) -> None:
    text = csv_text('u1,24" monitor,view,1,1700000000,s1', "u2,i2,view,1,1700000000", 'u3,5\'11" tall,view,x,1700000000,s3')
    data = load(write(tmp_path, text), now=NOW)
    assert data.interactions["item_id"].tolist() == ['24" monitor']
    assert {(i.line, i.reason) for i in data.report.issues} == {(3, v.MALFORMED_ROW), (4, v.UNPARSEABLE)}


def test_file_without_final_newline_and_many_fields_short(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "\n" + GOOD + "\nu2")
    data = load(path, now=NOW)
    issue = data.report.issues[0]
    assert (issue.line, issue.field, issue.message) == (3, "item_id", "expected 6 fields, found 1")


def test_missing_required_column_fails_in_both_modes(tmp_path: Path) -> None:
    path = write(tmp_path, "user_id,value\nu1,1\n")
    for strict in (False, True):
        with pytest.raises(DataError, match=r"events.csv, line 1, field 'item_id': required column missing"):
            load(path, strict=strict)


def test_ambiguous_aliases_fail_and_exact_names_win(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="could all be 'user_id'"):
        load(write(tmp_path, "userId,customer_id,item_id\nu1,c1,i1\n"))
    data = load(write(tmp_path, "userId,user_id,item_id\nx,u1,i1\n", "b.csv"))
    assert data.interactions["user_id"].tolist() == ["u1"]
    assert any("'userId' ignored" in note for note in data.report.files[0].notes)


def test_strict_drops_and_counts_cancellations_instead_of_failing(tmp_path: Path) -> None:
    path = write(tmp_path, csv_text(GOOD, "u1,i2,return,1,1700000000,s1", "u2,i3,view,1,1700000000,s1"))
    data = load(path, strict=True, now=NOW)
    assert data.report.dropped == {v.CANCELLED: 1}
    assert data.interactions["item_id"].tolist() == ["i1", "i3"]


def test_duplicate_header_names_fail(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="line 1, field 'item_id': column name appears more than once"):
        load(write(tmp_path, "user_id,item_id,item_id\nu1,i1,i2\n"))


def test_nothing_left_is_an_error_even_when_lenient(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no valid interactions \(missing_user: 2\)"):
        load(write(tmp_path, csv_text(",i1,view,1,1700000000,s1", ",i2,view,1,1700000000,s1")), now=NOW)
    with pytest.raises(DataError, match="no data rows"):
        load(write(tmp_path, HEADER + "\n", "header_only.csv"))
    with pytest.raises(DataError, match="the file is empty"):
        load(write(tmp_path, "", "empty.csv"))


def test_timestamps_seconds_ms_iso_and_future(tmp_path: Path) -> None:
    rows = [
        "u1,i1,view,1,1700000000,s1",
        "u1,i2,view,1,1700000000999,s1",  # ms -> 1700000000
        "u1,i3,view,1,2023-11-14T22:13:20Z,s1",  # = 1700000000
        "u1,i4,view,1,2023-11-15T00:13:20+02:00,s1",  # = 1700000000
        "u1,i5,view,1,2023-11-14,s1",  # midnight UTC
        f"u1,i6,view,1,{NOW + 3600},s1",  # within the one-day tolerance
        f"u1,i7,view,1,{NOW + 3 * 86400},s1",  # future
    ]
    data = load(write(tmp_path, csv_text(*rows)), now=NOW)
    assert data.interactions["timestamp"].tolist() == [1700000000] * 4 + [1699920000, NOW + 3600]
    assert data.report.dropped == {v.TIMESTAMP_OUT_OF_RANGE: 1}
    notes = " ".join(data.report.files[0].notes)
    assert "3 ISO-8601 timestamps" in notes and "1 timestamps read as unix milliseconds" in notes


def test_parse_timestamps_numeric_units() -> None:
    seconds, bad, notes = v.parse_timestamps(pd.Series([1_700_000_000, 1_700_000_000_123, 1_700_000_000_123_456, 1_700_000_000_123_456_789]))
    assert seconds.tolist() == [1_700_000_000] * 4
    assert not bad.any() and len(notes) == 3


def test_date_time_columns_from_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "item_id": ["i1", "i2", "i3"],
            "timestamp": pd.to_datetime(["2023-11-14 22:13:20", "2023-11-14 22:13:21", None]),
        }
    )
    frame.to_parquet(tmp_path / "events.parquet")
    data = load(tmp_path / "events.parquet", now=NOW)
    assert data.interactions["timestamp"].tolist() == [1_700_000_000, 1_700_000_001]
    assert data.report.dropped == {v.MISSING_VALUE: 1}
    zoned = frame.assign(timestamp=frame["timestamp"].dt.tz_localize("Europe/Berlin"))
    seconds, bad, _ = v.parse_timestamps(zoned["timestamp"])
    assert seconds[:2].tolist() == [1_700_000_000 - 3600, 1_700_000_001 - 3600] and not bad.any()


def test_event_types_are_normalised_and_reported(tmp_path: Path) -> None:
    rows = ["u1,i1,Add To Cart,1,1700000000,s1", "u1,i2,transaction,1,1700000000,s1", "u1,i3,wishlist,1,1700000000,s1"]
    data = load(write(tmp_path, csv_text(*rows)), now=NOW)
    assert data.interactions["event_type"].tolist() == ["add_to_cart", "purchase", "wishlist"]
    notes = " ".join(data.report.files[0].notes)
    assert "'Add To Cart' -> 'add_to_cart'" in notes and "'transaction' -> 'purchase'" in notes
    assert "'wishlist' (1)" in notes


def test_aliases_are_reported_and_unknown_columns_ignored(tmp_path: Path) -> None:
    text = "customerId,productId,action,qty,ts,visit_id,orderId,referrer\nc1,p1,purchase,2,1700000000,v1,o1,google\n"
    data = load(write(tmp_path, text), now=NOW)
    report = data.report.files[0]
    assert report.columns == {
        "user_id": "customerId",
        "item_id": "productId",
        "event_type": "action",
        "value": "qty",
        "timestamp": "ts",
        "session_id": "visit_id",
        "order_id": "orderId",
    }
    assert report.ignored_columns == ["referrer"]
    assert data.interactions["order_id"].tolist() == ["o1"]
    # Issues name the field as the file spells it.
    bad = load(write(tmp_path, text + text.replace(",2,", ",two,").split("\n", 1)[1], "bad.csv"), now=NOW)
    assert bad.report.issues[0].field == "qty"


def test_catalog_reasons(tmp_path: Path) -> None:
    events = write(tmp_path, csv_text(GOOD))
    catalog = write(
        tmp_path,
        "item_id,title,price,in_stock\n"
        "i1,One,9.99,yes\n"  # 2
        "i2,Two,cheap,true\n"  # 3 unparseable price
        "i3,Three,-1,1\n"  # 4 negative price
        "i4,Four,5,maybe\n"  # 5 unparseable in_stock
        ",Nameless,1,0\n"  # 6 missing id
        "i1,One again,8.99,no\n"  # 7: i1 again -> line 2 dropped as duplicate_id
        "i5,Five,,\n"  # 8 fine: price and stock unknown
        "i5,Five,,\n",  # 9 exact duplicate
        "catalog.csv",
    )
    data = load(events, catalog=catalog, now=NOW)
    report = data.report.files[1]
    assert report.table == "catalog"
    assert report.dropped == {v.UNPARSEABLE: 2, v.NEGATIVE_VALUE: 1, v.MISSING_ID: 1, v.DUPLICATE_ID: 1, v.DUPLICATE: 1}
    assert {(i.line, i.field) for i in report.issues} == {(3, "price"), (4, "price"), (5, "in_stock"), (6, "item_id"), (2, "item_id"), (9, v.WHOLE_ROW)}
    cat = data.catalog
    assert cat is not None
    assert cat["item_id"].tolist() == ["i1", "i5"]
    assert cat["title"].tolist() == ["One again", "Five"]
    assert cat["in_stock"].tolist()[0] is False or cat["in_stock"].tolist()[0] == False  # noqa: E712
    assert pd.isna(cat["in_stock"].iloc[1]) and np.isnan(cat["price"].iloc[1])
    with pytest.raises(DataError, match=r"catalog.csv, line 2, field 'item_id': item 'i1' is listed again"):
        load(events, catalog=catalog, strict=True, now=NOW)


def test_parquet_problems_are_numbered_by_row(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": ["u1", "u2", None], "item_id": ["i1", "i2", "i3"], "timestamp": [1_700_000_000, 5, 1_700_000_000]})
    path = tmp_path / "events.parquet"
    frame.to_parquet(path)
    data = load(path, now=NOW)
    assert [(i.unit, i.line, i.field) for i in data.report.issues] == [("row", 2, "timestamp"), ("row", 3, "user_id")]
    with pytest.raises(DataError, match=r"events.parquet, row 2, field 'timestamp'"):
        load(path, strict=True, now=NOW)


def test_bad_encoding_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    with open(path, "wb") as handle:
        handle.write((csv_text(GOOD) + "u2,caf\xe9,view,1,1700000000,s2\n").encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv, line 3: not valid utf-8"):
        load(path)


def test_unterminated_quote_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="events.csv"):
        load(write(tmp_path, csv_text(GOOD, 'u2,"i2,view,1,1700000000,s2')))


def test_issue_list_is_short_but_covers_every_reason(tmp_path: Path) -> None:
    rows = [GOOD] + ["u1,i2,view,abc,1700000000,s1"] * 50 + ["u1,i3,cancel,1,1700000000,s1"]
    data = load(write(tmp_path, csv_text(*rows)), now=NOW)
    report = data.report.files[0]
    assert report.dropped == {v.UNPARSEABLE: 50, v.CANCELLED: 1}
    assert len(report.issues) == v.MAX_ISSUES + 1
    assert report.issues[-1].reason == v.CANCELLED and report.issues[-1].line == 53
    assert [i.line for i in report.issues[:3]] == [3, 4, 5]


def test_report_is_json_ready_and_printable(tmp_path: Path) -> None:
    data = load(bad_file(tmp_path), now=NOW)
    blob = json.loads(json.dumps(data.report.to_dict()))
    assert blob["ok"] is False
    assert blob["dropped"][v.MALFORMED_ROW] == 2
    assert blob["files"][0]["issues"][0] == {
        "file": str(tmp_path / "events.csv"),
        "line": 3,
        "field": "user_id",
        "reason": v.MISSING_USER,
        "message": "empty user id (a guest line?)",
    }
    text = "\n".join(data.report.lines())
    assert "malformed_row" in text and "first problems:" in text


def test_load_frames_validates_in_memory_tables() -> None:
    frame = pd.DataFrame({"userId": [1, 2, 2], "itemId": [10.0, 20.0, 20.0], "rating": [4.0, 5.0, 5.0]})
    data = load_frames(frame)
    assert data.interactions["user_id"].tolist() == ["1", "2"]
    assert data.interactions["item_id"].tolist() == ["10", "20"]  # integral floats read as ints
    assert data.interactions["event_type"].tolist() == ["rating", "rating"]
    assert data.report.dropped == {v.DUPLICATE: 1}
    assert data.report.issues[0].unit == "row" and data.report.issues[0].line == 3


def test_validation_is_vectorised_on_a_large_table() -> None:
    n = 200_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 5000, n).astype(str),
            "item_id": rng.integers(0, 5000, n).astype(str),
            "value": rng.integers(-1, 5, n).astype(str),  # about 1/6 negative
            "timestamp": 1_700_000_000 + np.arange(n),
        }
    )
    data = load_frames(frame, now=NOW)
    assert data.report.dropped[v.NEGATIVE_VALUE] == int((frame["value"] == "-1").sum())


def test_duplicated_rows_equals_pandas_on_a_large_table() -> None:
    import numpy as np
    import pandas as pd

    from recsys.data.validation import duplicated_rows

    rng = np.random.default_rng(0)
    n = 150_000
    frame = pd.DataFrame(
        {
            "user_id": pd.Series(rng.integers(0, 5_000, n).astype(str), dtype="string"),
            "item_id": rng.integers(0, 300, n).astype(str),
            "value": np.where(rng.random(n) < 0.1, np.nan, rng.integers(1, 3, n)),
            "timestamp": rng.integers(0, 50, n).astype(np.float64),
        }
    )
    expected = frame.duplicated(keep="first").to_numpy()
    assert 0 < expected.sum() < n
    np.testing.assert_array_equal(duplicated_rows(frame), expected)
    np.testing.assert_array_equal(duplicated_rows(frame.iloc[::-1].reset_index(drop=True)), frame.iloc[::-1].duplicated().to_numpy())
