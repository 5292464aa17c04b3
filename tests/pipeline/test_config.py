"""The pipeline configuration: validation with key paths, precedence, the documented example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from recsys.errors import ConfigError
from recsys.pipeline.config import PipelineConfig, load_config, parse_config
from recsys.pipeline.schedule import parse_interval

REPO_ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recsys.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_is_valid_and_documents_every_key() -> None:
    config = load_config(REPO_ROOT / "recsys.toml")
    assert config.data.path == str(REPO_ROOT / "demo-data")
    assert config.default_model() == "popular" and config.publish.default_model == "auto"
    text = (REPO_ROOT / "recsys.toml").read_text(encoding="utf-8")
    sections = {name: field.annotation for name, field in PipelineConfig.model_fields.items() if name != "models"}
    for section, model in sections.items():
        assert f"[{section}]" in text, section
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                assert f"[{section}.{key}]" in text, f"{section}.{key}"
                continue
            # Each key appears (set or commented out) at the start of a line, with a comment.
            line = re.search(rf"^#? ?{key} = .*$", text, flags=re.MULTILINE)
            assert line, f"{section}.{key} missing from recsys.toml"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[models.als]\nfactors = -3", r"models\.als\.factors: .*greater than or equal to 1 \(got -3\)"),
        ("[models.als]\nfactorz = 3", r"models\.als\.factorz: unknown key \(allowed: .*factors"),
        ("[models.nope]", r"models\.nope: unknown model \(allowed: popular, itemknn"),
        ("[data]\nformat = 'xls'", r"data\.format: .*'auto', 'csv', 'parquet', 'movielens-100k' or 'movielens-latest'"),
        ("[data]\nvalidation = 'loose'", r"data\.validation: .*'strict' or 'lenient'"),
        ("[data.events]\nfrom_redis = 'maybe'", r"data\.events\.from_redis"),
        ("[lists]\nuser_n = 0", r"lists\.user_n: .*greater than or equal to 1"),
        ("[lists]\ncolour = 'red'", r"lists\.colour: unknown key \(allowed: user_models, similar_models"),
        ("[redis]\nhost = 'x'", r"redis\.host: unknown key \(allowed: url, key_prefix\)"),
        ("[publish]\nkeep_versions = 0", r"publish\.keep_versions"),
        ("[weighting]\nevent_weights = { view = -1.0 }", r"weighting\.event_weights: event weights must be >= 0"),
        ("[schedule]\nevery = 'often'", r"schedule\.every: invalid interval 'often'"),
        ("[publish]\ndefault_model = 'als'\n[models.popular]", r"publish\.default_model: 'als' has no user lists \(allowed: 'auto', popular\)"),
            ("[selection]\nmetric = 'rmse'", r"selection\.metric: Value error|selection\.metric: 'rmse' scores rating predictions"),
            ("[selection]\nmetric = 'ndcg'", r"selection\.metric: metric 'ndcg' needs a cut-off"),
            ("[selection]\ncandidates = ['ease']\n[models.popular]", r"selection\.candidates: \['ease'\] have no user lists"),
            ("[selection]\nholdout_fraction = 1.5", r"selection\.holdout_fraction: Input should be less than 1"),
        ("[lists]\nuser_models = ['ease']\n[models.popular]", r"lists\.user_models: \['ease'\] not configured"),
        ("surprise = 1", r"surprise: unknown key \(allowed: data, weighting"),
        ("models = {}", r"models: no model configured"),
    ],
)
def test_invalid_configuration_names_key_and_allowed(tmp_path: Path, toml: str, message: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[data]\npath = 'x'\nformat = \n")
    with pytest.raises(ConfigError, match=r"recsys\.toml: invalid TOML: .*line 3"):
        load_config(path)
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "missing.toml")


def test_models_validated_by_their_own_class() -> None:
    config = parse_config({"models": {"popular": {"mode": "weight"}, "itemknn": {"k": 7}}})
    configs = config.model_configs()
    assert configs["popular"].mode == "weight"  # type: ignore[attr-defined]
    assert configs["itemknn"].k == 7  # type: ignore[attr-defined]
    assert config.user_models() == ["popular", "itemknn"]
    assert config.similar_models() == ["itemknn"]
    assert config.default_model() == "popular"


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "job.toml"
    path.write_text("[data]\npath = 'data/shop'\ncatalog = '/abs/catalog.csv'\n[training]\nout = 'runs'\n")
    config = load_config(path)
    assert config.data.path == str(tmp_path / "conf" / "data" / "shop")
    assert config.data.catalog == "/abs/catalog.csv"
    assert config.training.out == str(tmp_path / "conf" / "runs")


def test_data_override_replaces_catalog_and_revalidates() -> None:
    config = parse_config({"data": {"path": "a", "catalog": "c.csv"}})
    other = config.with_data("/data/ml", "movielens-100k")
    assert (other.data.path, other.data.format, other.data.catalog) == ("/data/ml", "movielens-100k", None)
    with pytest.raises(ConfigError, match=r"data\.format"):
        config.with_data(None, "xls")


def test_redis_url_and_prefix_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config({"redis": {"url": "redis://file:1/0", "key_prefix": "file:"}})
    monkeypatch.delenv("RECSYS_REDIS_URL", raising=False)
    monkeypatch.delenv("RECSYS_KEY_PREFIX", raising=False)
    assert config.redis_url() == "redis://file:1/0" and config.key_prefix() == "file:"
    monkeypatch.setenv("RECSYS_REDIS_URL", "redis://env:2/0")
    monkeypatch.setenv("RECSYS_KEY_PREFIX", "env:")
    assert config.redis_url() == "redis://env:2/0" and config.key_prefix() == "env:"
    assert config.redis_url("redis://flag:3/0") == "redis://flag:3/0" and config.key_prefix("flag:") == "flag:"
    monkeypatch.delenv("RECSYS_REDIS_URL")
    monkeypatch.delenv("RECSYS_KEY_PREFIX")
    bare = parse_config({})
    assert bare.redis_url() is None  # -> the embedded Redis
    assert bare.key_prefix() == "recsys:"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("6h", 21600), ("1d", 86400), ("1h30m", 5400), ("2.5", 2.5), ("2H", 7200)]
)
def test_parse_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "6x", "h", "0s", "1h 30m", "-5m"])
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid interval"):
        parse_interval(text)
