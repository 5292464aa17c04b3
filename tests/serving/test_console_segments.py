"""The console on a version with customer segments (built by the real pipeline, as in
test_segment_fallback) and with published audiences: the overview lists both, the user page
names the user's segment."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from flask.testing import FlaskClient

from recsys.marketing.audiences import publish_audience
from recsys.store.keys import KeyLayout
from tests.serving.test_segment_fallback import LAPSED_READERS, segmented  # noqa: F401  (module fixture)

ADMIN = "console-segments-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def console(make_app: Any, segmented: dict[str, Any]) -> FlaskClient:  # noqa: F811
    return make_app(admin_token=ADMIN, key_prefix=segmented["prefix"]).test_client()


def _table(run: Path) -> dict[str, int]:
    table = pq.read_table(run / "segments.parquet").to_pandas()
    return dict(zip(table["user_id"], table["segment"]))


def test_version_metadata_records_the_segment_sizes(segmented: dict[str, Any]) -> None:  # noqa: F811
    counted = Counter(str(s) for s in _table(Path(segmented["run"])).values())
    assert segmented["meta"]["segment_sizes"] == dict(counted)
    run_meta = json.loads((Path(segmented["run"]) / "metadata.json").read_text())
    assert segmented["meta"]["segment_sizes"] == {k: int(v) for k, v in run_meta["segments"]["sizes"].items()}


def test_overview_lists_the_segments(console: FlaskClient, segmented: dict[str, Any]) -> None:  # noqa: F811
    html = console.get("/console", headers=AUTH).get_data(as_text=True)
    section = re.search(r'<section class="card" id="segments">(.*?)</section>', html, re.S)
    assert section is not None
    sizes = segmented["meta"]["segment_sizes"]
    total = sum(sizes.values())
    rows = re.findall(r'<tr data-segment="([^"]+)"><td>([^<]*)</td><td class="num">([\d,]+)</td><td class="num">([\d.]+)%</td>',
                      section.group(1))
    assert {r[0] for r in rows} == set(segmented["meta"]["segments"])
    for segment, name, size, share in rows:
        from markupsafe import escape

        assert name == str(escape(segmented["meta"]["segments"][segment]))
        assert int(size.replace(",", "")) == sizes[segment]
        assert float(share) == pytest.approx(100 * sizes[segment] / total, abs=0.05)
    assert 'id="audiences"' not in html  # none published yet


def test_overview_lists_published_audiences_escaped(console: FlaskClient, segmented: dict[str, Any]) -> None:  # noqa: F811
    client, layout = segmented["client"], KeyLayout(segmented["prefix"])
    publish_audience(client, layout, "console-churn", ["reader-1", "reader-2", "gardener-3"], [0.9, 0.5, 0.2],
                     {"target": "<script>purchase</script>", "auc": 0.8123, "horizon_days": 30})
    try:
        html = console.get("/console", headers=AUTH).get_data(as_text=True)
        row = re.search(r'<tr data-audience="console-churn">(.*?)</tr>', html, re.S)
        assert row is not None
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
        assert cells[0] == "console-churn"
        assert cells[1] == "&lt;script&gt;purchase&lt;/script&gt;" and "<script>" not in html
        assert cells[2] == "3" and cells[3] == "0.8123" and cells[4].endswith("UTC")
    finally:
        client.delete(layout.audience("console-churn"), layout.audience_meta("console-churn"))


def test_user_page_names_the_segment(console: FlaskClient, segmented: dict[str, Any]) -> None:  # noqa: F811
    from markupsafe import escape

    table = _table(Path(segmented["run"]))
    for user in (LAPSED_READERS[0], "gardener-2"):
        html = console.get(f"/console/users?user_id={user}", headers=AUTH).get_data(as_text=True)
        expected = str(escape(segmented["meta"]["segments"][str(table[user])]))
        assert f'<b id="user-segment">{expected}</b>' in html, user
        assert 'id="lists"' in html
    outside = console.get("/console/users?user_id=nobody-here", headers=AUTH).get_data(as_text=True)
    assert 'id="segment"' in outside and 'id="user-segment"' not in outside


def test_overview_describes_each_segment_by_its_median_customer_and_categories(
    console: FlaskClient, segmented: dict[str, Any]  # noqa: F811
) -> None:
    from markupsafe import escape

    run_meta = json.loads((Path(segmented["run"]) / "metadata.json").read_text())
    details = segmented["meta"]["segment_details"]
    assert details == run_meta["segments"]["details"] and set(details) == set(segmented["meta"]["segments"])
    html = console.get("/console", headers=AUTH).get_data(as_text=True)
    for segment, detail in details.items():
        assert set(detail["centroid"]) == {"recency_days", "frequency", "monetary", "tenure_days"}
        row = re.search(rf'<tr data-segment="{re.escape(segment)}">(.*?)</tr>', html, re.S)
        assert row is not None
        centroid = re.search(r'<td class="centroid">(.*?)</td>', row.group(1), re.S).group(1)
        assert f"{detail['centroid']['frequency']:g} orders" in centroid
        assert f"last order {detail['centroid']['recency_days']:.0f} d ago" in centroid
        cell = re.search(r'<td class="top-categories">(.*?)</td>', row.group(1), re.S).group(1)
        assert detail["top_categories"], segment  # the fixture's shop has categories
        for top in detail["top_categories"]:
            assert f"{escape(top['category'])} {100 * top['share']:.0f}%" in cell
