"""The served model is chosen on a temporal holdout of the data; failures are loud."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from click.testing import CliRunner

from recsys.cli.main import cli
from recsys.data import schema
from recsys.data.generate import generate_shop
from recsys.errors import ModelError
from recsys.evaluation.runner import EvaluationSettings, evaluate
from recsys.evaluation.splits import SplitSpec
from recsys.models.als import ALSConfig
from recsys.pipeline.config import parse_config
from recsys.pipeline.selection import holdout_cut
from recsys.pipeline.train import LoadedInput, train

LISTS = {"user_n": 5, "similar_n": 3, "together_n": 3, "popular_n": 5}


@pytest.fixture(scope="module")
def shop() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small shop (3,500 events), the size at which tuned-on-MovieLens defaults go wrong."""
    return generate_shop(200, 120, 3_500, seed=0)


def run(tmp_path: Path, frames: tuple[pd.DataFrame, pd.DataFrame | None], **sections: object) -> dict:
    document: dict[str, object] = {"lists": LISTS, "training": {"out": str(tmp_path / "runs")}}
    document.update(sections)
    folder = train(parse_config(document), data=LoadedInput(*frames), show_progress=False)
    with open(folder / "metadata.json", encoding="utf-8") as handle:
        return json.load(handle)


def test_auto_serves_the_holdout_best_and_scores_match_evaluate(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    models = {"itemknn": {"k": 20}, "als": {}, "ease": {}}
    meta = run(tmp_path, shop, models=models)
    selection = meta["selection"]
    table = {row["model"]: row for row in selection["candidates"]}
    # popular competes although it is not configured; every configured model is a candidate.
    assert list(table) == ["popular", "itemknn", "als", "ease"]
    best = max(table.values(), key=lambda row: row["value"])
    assert meta["default_model"] == selection["default_model"] == best["model"]
    assert best["chosen"] and sum(row["chosen"] for row in table.values()) == 1
    assert best["value"] >= table["popular"]["value"]
    # The same figures through the evaluation runner on the same temporal cut.
    interactions, catalog = shop
    cut = holdout_cut(interactions[schema.TIMESTAMP].to_numpy(dtype=float), 0.2, None)
    assert selection["holdout"]["method"] == "temporal" and selection["holdout"]["cut"] == cut
    reference = evaluate(
        interactions, list(models) + ["popular"], catalog=catalog, split=SplitSpec(method="temporal", cut=cut),
        settings=EvaluationSettings(k=10), params=models, progress=False,
    )
    for name, row in table.items():
        assert row["value"] == pytest.approx(reference.models[name]["ndcg@10"], abs=1e-9), name
    if best["model"] != "popular":
        # popular was only a candidate: it is not published as a user model.
        assert [e["model"] for e in meta["lists"] if e["kind"] == "user"] == list(models)


def test_a_model_that_loses_to_popular_is_never_served(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    # One neighbour per user: a weak model, below popularity on this shop.
    meta = run(tmp_path, shop, models={"userknn": {"k": 1}})
    table = {row["model"]: row for row in meta["selection"]["candidates"]}
    assert table["userknn"]["value"] < table["popular"]["value"]
    assert meta["default_model"] == "popular" and "loses to popular" not in table["popular"]["why"]
    assert "loses to popular" in table["userknn"]["why"]
    # popular was not configured: it is fitted and published so that it can be served.
    assert ("user", "popular") in [(e["kind"], e["model"]) for e in meta["lists"]]


def test_ties_go_to_popular_then_configuration_order(tmp_path: Path) -> None:
    # Every held-out item is new: no model can hit one, all score 0.
    users = [f"u{i}" for i in range(30)]
    old = pd.DataFrame(
        {
            schema.USER_ID: np.repeat(users, 4),
            schema.ITEM_ID: [f"i{(u + j) % 12}" for u in range(30) for j in range(4)],
            schema.TIMESTAMP: np.arange(120) + 1_000,
        }
    )
    new = pd.DataFrame({schema.USER_ID: users, schema.ITEM_ID: [f"new{i}" for i in range(30)], schema.TIMESTAMP: np.arange(30) + 5_000})
    frames = (pd.concat([old, new], ignore_index=True), None)
    meta = run(tmp_path, frames, models={"itemknn": {}, "userknn": {}}, selection={"holdout_fraction": 0.2})
    values = {row["model"]: row["value"] for row in meta["selection"]["candidates"]}
    assert values == {"popular": 0.0, "itemknn": 0.0, "userknn": 0.0}
    assert meta["default_model"] == "popular"
    meta = run(tmp_path, frames, models={"itemknn": {}, "userknn": {}}, selection={"candidates": ["userknn", "itemknn"]})
    assert [row["model"] for row in meta["selection"]["candidates"]] == ["popular", "userknn", "itemknn"]
    assert meta["default_model"] == "popular"


def test_selection_disabled_serves_the_first_user_model(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    meta = run(tmp_path, shop, models={"rules": {}, "popular": {}}, selection={"enabled": False})
    assert meta["default_model"] == "rules"
    assert meta["selection"]["candidates"] == [] and "selection.enabled = false" in meta["selection"]["reason"]
    assert "selection" not in meta["timings"] or meta["timings"]["selection"] < 1.0


def test_budget_tries_the_grid_and_fits_the_better_configuration(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    meta = run(tmp_path, shop, models={"als": {"iterations": 3}}, selection={"budget_seconds": 30})
    row = next(r for r in meta["selection"]["candidates"] if r["model"] == "als")
    assert row["configurations_tried"] > 1
    fitted = meta["models"]["als"]["config"]
    if row["tuned"]:
        assert all(fitted[key] == value for key, value in row["params"].items())
    else:
        assert row["params"] == {"iterations": 3} and fitted == {**ALSConfig().model_dump(mode="json"), "iterations": 3}


# ------------------------------------------------------------------ loud failures
def quantities_as_ratings(seed: int = 0) -> pd.DataFrame:
    """Invoice lines with quantities up to 350,000 and no event type: every value is a rating."""
    rng = np.random.default_rng(seed)
    n = 3_000
    return pd.DataFrame(
        {
            schema.USER_ID: rng.integers(0, 150, n).astype(str),
            schema.ITEM_ID: rng.integers(0, 80, n).astype(str),
            schema.VALUE: np.where(rng.random(n) < 0.02, 350_000.0, rng.integers(1, 48, n).astype(float)),
            schema.TIMESTAMP: np.sort(rng.integers(1_600_000_000, 1_610_000_000, n)),
        }
    )


def test_svd_on_counts_taken_as_ratings_gives_lists_not_nan(tmp_path: Path) -> None:
    from surprise import SVD, Reader
    from surprise import Dataset as SurpriseDataset

    data = quantities_as_ratings()
    # The failure: fitted on the raw values, surprise's SGD diverges to NaN factors.
    frame = data.rename(columns={schema.USER_ID: "u", schema.ITEM_ID: "i", schema.VALUE: "r"})[["u", "i", "r"]]
    trainset = SurpriseDataset.load_from_df(frame, Reader(rating_scale=(1, 350_000))).build_full_trainset()
    raw = SVD(random_state=0).fit(trainset)
    assert not np.isfinite(raw.pu).all()
    # Now the values are mapped onto 1-5 first: finite factors, a list for every user.
    meta = run(tmp_path, (data, None), models={"svd": {"random_state": 0}}, selection={"enabled": False})
    entry = next(e for e in meta["lists"] if e["kind"] == "user" and e["model"] == "svd")
    assert entry["rows"] == data[schema.USER_ID].nunique()  # empty lists are not written
    with pytest.raises(ModelError, match=r"wider than a rating scale.*models\.svd\.rating_scale"):
        run(tmp_path, (data, None), models={"svd": {"out_of_scale": "refuse"}}, selection={"enabled": False})
    with pytest.raises(ModelError, match=r"outside models\.svd\.rating_scale \(1\.0, 5\.0\)"):
        run(tmp_path, (data, None), models={"svd": {"out_of_scale": "refuse", "rating_scale": [1, 5]}}, selection={"enabled": False})


def test_a_diverging_fit_fails_strict_and_is_dropped_lenient(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = quantities_as_ratings()
    data[schema.VALUE] = np.clip(data[schema.VALUE], 1, 5)
    models = {"popular": {}, "svd": {"lr_all": 50.0, "random_state": 0}}
    with pytest.raises(ModelError, match=r"svd: failed on the selection holdout: svd: the fit produced \d+ non-finite values.*lr_all"):
        run(tmp_path, (data, None), models=models, data={"validation": "strict"})
    with caplog.at_level(logging.WARNING):
        meta = run(tmp_path, (data, None), models=models)
    assert "lr_all" in meta["skipped"]["svd"] and "non-finite" in meta["skipped"]["svd"]
    assert "svd" not in meta["models"] and meta["default_model"] == "popular"
    assert any("dropping model svd" in record.getMessage() for record in caplog.records)


def test_rules_without_a_single_rule_names_min_support(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], caplog: pytest.LogCaptureFixture
) -> None:
    models = {"popular": {}, "rules": {"min_support": 1.0}}
    with caplog.at_level(logging.WARNING):
        meta = run(tmp_path, shop, models=models, selection={"enabled": False})
    assert "min_support" in meta["skipped"]["rules"]
    assert not [e for e in meta["lists"] if e["kind"] == "together" or e["model"] == "rules"]
    assert any("rules" in r.getMessage() and "min_support" in r.getMessage() for r in caplog.records)
    with pytest.raises(ModelError, match=r"rules: produced no list at all.*min_support"):
        run(tmp_path, shop, models=models, selection={"enabled": False}, data={"validation": "strict"})


def test_pipeline_prints_the_table_and_versions_show_why(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    interactions, catalog = shop
    interactions.to_csv(tmp_path / "interactions.csv", index=False)
    catalog.to_csv(tmp_path / "catalog.csv", index=False)
    config = tmp_path / "job.toml"
    config.write_text(
        f'[data]\npath = "{tmp_path}"\n[training]\nout = "runs"\n[models.itemknn]\nk = 20\n[models.ease]\n'
        "[lists]\nuser_n = 5\nsimilar_n = 3\n",
        encoding="utf-8",
    )
    store = ["--redis", redis_url, "--prefix", key_prefix]
    runner = CliRunner()
    printed = runner.invoke(cli, ["pipeline", "--config", str(config), *store], catch_exceptions=False)
    assert printed.exit_code == 0, printed.output
    lines = printed.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["model", "ndcg@10"])
    assert {line.split()[0] for line in lines[header + 2 : header + 5]} == {"popular", "itemknn", "ease"}
    assert any(line.startswith("default model: ") for line in lines)
    listed = json.loads(runner.invoke(cli, ["versions", *store, "--json"], catch_exceptions=False).output)
    meta = listed["versions"][0]["meta"]
    chosen = [row["model"] for row in meta["selection"]["candidates"] if row["chosen"]]
    assert chosen == [meta["default_model"]] and meta["default_reason"].startswith("best ndcg@10 on the holdout")


def test_a_default_model_without_lists_is_replaced(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    # No pair is in every basket: not a single rule, not a single list.
    models = {"rules": {"min_support": 1.0}, "popular": {}}
    meta = run(tmp_path, shop, models=models, selection={"enabled": False})
    assert meta["default_model"] == "popular" and "produced no list" in meta["skipped"]["rules"]
    assert [e["model"] for e in meta["lists"] if e["kind"] == "user"] == ["popular"]
    # With selection, the holdout already shows it: dropped before the fit on all data.
    meta = run(tmp_path, shop, models=models)
    assert "recommends no item" in meta["skipped"]["rules"] and "rules" not in meta["models"]
    assert meta["default_model"] == "popular"


def test_auto_with_the_first_model_skipped_serves_another(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    # svd needs ratings, which a shop of views and purchases has none of.
    meta = run(tmp_path, shop, models={"svd": {}, "itemknn": {"k": 20}})
    assert "ratings" in meta["skipped"]["svd"]
    assert meta["default_model"] in {"itemknn", "popular"}
    assert [row["model"] for row in meta["selection"]["candidates"]] == ["popular", "itemknn"]


def test_a_large_holdout_is_scored_on_a_seeded_sample_of_its_users(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    full = run(tmp_path / "full", shop, models={"itemknn": {"k": 20}})["selection"]
    assert "holdout_users" not in full["holdout"]
    sampled = [
        run(tmp_path / f"sampled-{i}", shop, models={"itemknn": {"k": 20}}, selection={"max_users": 40})["selection"]
        for i in range(2)
    ]
    holdout = sampled[0]["holdout"]
    assert holdout["evaluated_users"] == 40 and holdout["holdout_users"] == full["holdout"]["evaluated_users"] > 40
    # Seeded: the same sample, so the same figures, run after run; and not the full figures.
    values = [{row["model"]: row["value"] for row in s["candidates"]} for s in sampled]
    assert values[0] == values[1]
    assert values[0] != {row["model"]: row["value"] for row in full["candidates"]}


def test_candidates_are_fitted_on_a_seeded_sample_of_users_that_holds_the_scored_ones(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    from recsys.evaluation import runner

    fitted: list[tuple[int, int]] = []
    original = runner.score_model

    def spy(model, prepared, settings):  # type: ignore[no-untyped-def]
        fitted.append((prepared.train.n_users, int(prepared.eval_users.size)))
        assert np.all(np.diff(prepared.train.user_items.indptr)[prepared.eval_users] > 0)
        return original(model, prepared, settings)

    monkeypatch.setattr(runner, "score_model", spy)
    models = {"itemknn": {"k": 20}}
    full = run(tmp_path / "full", shop, models=models)["selection"]
    assert "fit_users" not in full["holdout"]
    scored_all = full["holdout"]["evaluated_users"]
    fitted.clear()
    sampled = [run(tmp_path / f"s{i}", shop, models=models, selection={"max_fit_users": 120})["selection"] for i in range(2)]
    holdout = sampled[0]["holdout"]
    training_users = shop[0][shop[0][schema.TIMESTAMP] < holdout["cut"]][schema.USER_ID].nunique()
    assert holdout["fit_users"] == 120 < holdout["training_users"] == training_users
    assert holdout["fit_rows"] < holdout["train_rows"]
    # Every candidate's matrix holds the sampled users only, and the scored users come first:
    # as many are scored as with every user fitted, when the sample can hold them.
    assert {users for users, _ in fitted} == {120}
    assert holdout["evaluated_users"] == min(scored_all, 120)
    # Seeded: the same sample and figures run after run.
    assert [r["value"] for r in sampled[0]["candidates"]] == [r["value"] for r in sampled[1]["candidates"]]
    # The scored share is capped by max_users inside the fitted sample.
    capped = run(tmp_path / "capped", shop, models=models, selection={"max_fit_users": 120, "max_users": 30})
    assert capped["selection"]["holdout"]["evaluated_users"] == 30
    assert capped["selection"]["holdout"]["fit_users"] == 120
