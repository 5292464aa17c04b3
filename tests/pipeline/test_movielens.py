"""Acceptance on MovieLens 100K: pipeline publishes every configured list; versions; rollback."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner

from recsys.cli.main import cli
from recsys.store.codec import decode_list
from recsys.store.keys import KeyLayout

CONFIG = """
[models.popular]
[models.itemknn]
[models.als]
factors = 32
iterations = 8
random_state = 0
[models.ease]
[models.svd]
n_epochs = 5
random_state = 0
[models.content]
[models.rules]

[lists]
user_n = 10
similar_n = 10

[publish]
default_model = "ease"
"""


@pytest.mark.slow
@pytest.mark.movielens
def test_pipeline_on_ml100k(
    datasets_dir: Path, tmp_path: Path, redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    config = tmp_path / "ml.toml"
    config.write_text(CONFIG, encoding="utf-8")
    store = ["--redis", redis_url, "--prefix", key_prefix]
    runner = CliRunner()

    def invoke(*args: str) -> dict:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    data = ["--data", str(datasets_dir / "ml-100k"), "--format", "movielens-100k"]
    first = invoke("pipeline", "--config", str(config), "--out", str(tmp_path / "runs"), *data, *store, "--json")
    layout = KeyLayout(key_prefix)
    version = first["version"]
    meta = orjson.loads(redis_client.get(layout.meta(version)))
    # rules: baskets are each user's ratings of one day (the loader's sessions)
    configured = ["popular", "itemknn", "als", "ease", "svd", "content", "rules"]
    assert meta["user_models"] == configured
    assert meta["similar_models"] == ["itemknn", "als", "ease", "svd", "content"]
    assert meta["default_model"] == "ease" and meta["has_popular"] and meta["has_together"]
    run_meta = json.loads((Path(first["run_dir"]) / "metadata.json").read_text())
    assert run_meta["skipped"] == {}
    assert run_meta["counts"]["users"] == 943 and run_meta["counts"]["items"] == 1682
    for model in configured:
        assert redis_client.hlen(layout.user_recs(version, model)) == 943, model
    for model in meta["similar_models"]:
        assert redis_client.hlen(layout.similar(version, model)) >= 1600, model
    assert redis_client.hlen(layout.catalog(version)) == 1682
    assert len(meta["categories"]) >= 15 and redis_client.hlen(layout.popular(version)) == len(meta["categories"]) + 1
    # User "1" rated 272 films; none of them is recommended back.
    recommended = decode_list(redis_client.hget(layout.user_recs(version, "ease"), "1"))
    assert len(recommended["i"]) == 10
    with open(datasets_dir / "ml-100k" / "u.data", encoding="latin-1") as handle:
        seen = {line.split("\t")[1] for line in handle if line.split("\t")[0] == "1"}
    assert len(seen) == 272 and not seen & set(recommended["i"])

    second = invoke("publish", first["run_dir"], *store, "--json")
    listed = invoke("versions", *store, "--json")
    assert [v["version"] for v in listed["versions"]] == [second["version"], version]
    assert listed["live"] == second["version"]
    assert invoke("rollback", *store, "--json") == {"previous": second["version"], "live": version}
    assert redis_client.get(layout.live).decode() == version
