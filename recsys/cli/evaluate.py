"""``recsys evaluate`` and ``recsys tune``: offline model comparison and grid search."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from recsys.cli.inputs import DataInput, config_option, resolve_input
from recsys.errors import ConfigError, ModelError
from recsys.data.loaders import FORMATS
from recsys.evaluation.runner import EvaluationSettings, evaluate as run_evaluation, load_input, parse_relevance
from recsys.evaluation.splits import SPLIT_METHODS, SplitSpec


def _data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by both commands: input data, split, relevance."""
    options = [
        click.option("--data", "data_path", type=click.Path(exists=True, path_type=Path), help="Interactions file or folder (default: [data] path of --config)."),
        config_option,
        click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="Input format [default: auto, or [data] format]."),
        click.option("--catalog", type=click.Path(exists=True, path_type=Path), help="Item catalogue file."),
        click.option(
            "--use-values/--no-use-values",
            default=None,
            help="Weight events by their value column (counts, quantities) [default: [weighting] use_values, else no]; "
            "[weighting] value_transform = \"log1p\" damps large counts.",
        ),
        click.option("--split", "method", type=click.Choice(SPLIT_METHODS), default="stratified", show_default=True, help="How to hold out test data."),
        click.option("--test-size", type=float, default=0.25, show_default=True, help="Share held out (stratified per user; temporal overall)."),
        click.option("--leave-k", type=int, default=1, show_default=True, help="leave-last: pairs per user held out."),
        click.option("--folds", type=int, default=5, show_default=True, help="kfold: number of folds."),
        click.option("--cut", type=int, help="temporal: cut time in unix seconds (default: the test-size quantile)."),
        click.option("--seed", type=int, default=42, show_default=True, help="Seed of the split."),
        click.option("--relevance", default="all", show_default=True, help="'all' or 'threshold:4' (ratings below 4 are not relevant)."),
        click.option("--cold-users", type=click.Choice(["exclude", "include"]), default="exclude", show_default=True, help="Score test users with no training data?"),
        click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), help="Write the results as JSON to this file ('-' = stdout, no table)."),
        click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when it is a terminal)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _input(
    config_path: Path | None, data_path: Path | None, fmt: str | None, catalog: Path | None, use_values: bool | None
) -> DataInput:
    """The data source and weighting: options over the --config file's [data] and [weighting]."""
    source = resolve_input(config_path, data_path, fmt, catalog, None)
    if use_values is not None:
        weighting = source.weighting.model_copy(update={"use_values": use_values})
        source = DataInput(source.path, source.format, source.catalog, source.strict, source.mapping, weighting)
    return source


def _split_spec(method: str, test_size: float, leave_k: int, folds: int, cut: int | None, seed: int) -> SplitSpec:
    try:
        return SplitSpec(method=method, test_size=test_size, leave_k=leave_k, folds=folds, cut=cut, seed=seed)  # type: ignore[arg-type]
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise ConfigError(f"split option {where or '(split)'}: {problem['msg']}") from None


def _split_line(split: dict[str, Any]) -> str:
    details = split.get("per_fold", [split])
    params = ", ".join(f"{key}={split[key]}" for key in ("test_size", "leave_k", "folds", "cut", "seed") if split.get(key) is not None)
    first = details[0]
    sizes = f"{first['train_rows']} train / {first['test_rows']} test rows" + (" (fold 0)" if len(details) > 1 else "")
    cold = (
        f"cold: {sum(d['cold_users'] for d in details)} users, {sum(d['cold_items'] for d in details)} items, "
        f"{sum(d['cold_test_rows'] for d in details)} test rows"
        + (" (all folds)" if len(details) > 1 else "")
    )
    scored = f"{first['evaluated_users']} users scored"
    return f"{split['method']} split ({params}): {sizes}; {scored}; {cold}; relevance {first['relevance']}"


def _emit(document: dict[str, Any], json_out: str | None, table: str) -> None:
    if json_out == "-":
        click.echo(json.dumps(document, indent=2, allow_nan=False))
        return
    click.echo(table)
    if json_out:
        from recsys.evaluation.report import write_json

        write_json(document, json_out)


@click.command("evaluate")
@_data_options
@click.option("--models", default="popular", show_default=True, help="Comma-separated model names.")
@click.option("--param", "params", multiple=True, metavar="MODEL.NAME=VALUE", help="Model parameter, e.g. als.factors=64 (repeatable).")
@click.option("--k", "k", type=int, default=10, show_default=True, help="List length scored.")
@click.option("--rating-metrics", is_flag=True, help="Also RMSE/MAE for models that predict ratings.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False, path_type=Path), help="Draw a PNG chart comparing the models.")
@click.option(
    "--backend", type=click.Choice(["local", "spark"]), default="local", show_default=True,
    help="Fit on this machine or on Spark (als, itemknn, rules, popular; --param spark.master=..., spark.als_reg_param=...).",
)
def evaluate(
    data_path: Path | None,
    config_path: Path | None,
    fmt: str | None,
    catalog: Path | None,
    use_values: bool | None,
    method: str,
    test_size: float,
    leave_k: int,
    folds: int,
    cut: int | None,
    seed: int,
    relevance: str,
    cold_users: str,
    json_out: str | None,
    progress: bool | None,
    models: str,
    params: Sequence[str],
    k: int,
    rating_metrics: bool,
    plot_out: Path | None,
    backend: str,
) -> None:
    """Compare models offline on a held-out split: one row per model, one column per metric."""
    from recsys.evaluation.runner import model_factories
    from recsys.evaluation.tuning import parse_assignment, parse_value

    names = [name.strip() for name in models.split(",") if name.strip()]
    model_params: dict[str, dict[str, Any]] = {}
    for text in params:
        key, value = parse_assignment(text)
        model, dot, parameter = key.partition(".")
        if not dot or not parameter:
            raise ConfigError(f"--param needs MODEL.NAME=VALUE, got {text!r}")
        model_params.setdefault(model, {})[parameter] = parse_value(value)
    if k < 1:
        raise ConfigError(f"--k must be >= 1, got {k}")
    spark_params = model_params.pop("spark", {})
    if spark_params and backend != "spark":
        raise ConfigError("--param spark.*: only with --backend spark")
    spec = _split_spec(method, test_size, leave_k, folds, cut, seed)
    source = _input(config_path, data_path, fmt, catalog, use_values)
    settings = EvaluationSettings(
        k=k,
        relevance_threshold=parse_relevance(relevance),
        rating_metrics=rating_metrics,
        cold_users=cold_users,  # type: ignore[arg-type]
        weighting=source.weighting,
    )
    report = {"data_path": data_path, "method": method, "json_out": json_out, "plot_out": plot_out, "progress": progress}
    if backend != "spark":
        _run_and_report(model_factories(names, model_params), spec, source, settings, report)
        return
    # The same split, settings and metrics; only the fitting happens on Spark.
    from recsys.pipeline.config import SparkConfig
    from recsys.spark.evaluate import spark_factories
    from recsys.spark.session import spark_session

    try:
        spark_config = SparkConfig(**spark_params)
    except ValidationError as error:
        problem = error.errors()[0]
        raise ConfigError(f"--param spark.{'.'.join(map(str, problem['loc']))}: {problem['msg']}") from None
    spark_factories(names, model_params, None, spark_config)  # refused before the session starts
    with spark_session(spark_config) as spark:
        _run_and_report(spark_factories(names, model_params, spark, spark_config), spec, source, settings, report, backend="spark")


def _run_and_report(
    factories: dict[str, Any], spec: SplitSpec, source: DataInput, settings: EvaluationSettings, options: dict[str, Any],
    backend: str = "local",
) -> None:  # fmt: skip
    from recsys.evaluation.report import format_table, plot_comparison

    loaded = load_input(source.path, source.format, source.catalog, strict=source.strict, mapping=source.mapping)
    result = run_evaluation(
        loaded.interactions,
        factories,
        catalog=loaded.catalog,
        split=spec,
        settings=settings,
        dataset_info={**loaded.info, "backend": backend} if backend != "local" else loaded.info,
        progress=options["progress"],
    )
    document = result.to_dict()
    document["weighting"] = settings.weighting.model_dump(mode="json")
    dataset = document["dataset"]
    suffix = f" ({backend})" if backend != "local" else ""
    header = (
        f"{dataset.get('name', options['data_path'])}{suffix}: {dataset['interactions']} interactions, {dataset['users']} users, "
        f"{dataset['items']} items\n{_split_line(document['split'])}\n"
    )
    _emit(document, options["json_out"], header + format_table(document["models"]))
    for warning in document.get("warnings", {}).values():
        click.echo(f"warning: {warning}", err=True)
    if options["plot_out"]:
        plot_comparison(document, options["plot_out"], title=f"{dataset.get('name', '')}: {options['method']} split, k={settings.k}")
    failed = result.errors()
    if failed:
        messages = [e if e.startswith(f"{n}:") else f"{n}: {e}" for n, e in failed.items()]
        raise ModelError(f"{len(failed)} model(s) failed: " + "; ".join(messages))


@click.command("tune")
@click.argument("model")
@_data_options
@click.option("--param", "params", multiple=True, metavar="NAME=V1,V2,...", help="Candidate values of one parameter (repeatable); the grid is their product.")
@click.option("--metric", default="ndcg@10", show_default=True, help="Validation metric to optimise (ndcg@10, map@10, recall@20, rmse, ...).")
@click.option("--final", is_flag=True, help="Refit the best configuration on the whole train part and score it on test.")
def tune(
    model: str,
    data_path: Path | None,
    config_path: Path | None,
    fmt: str | None,
    catalog: Path | None,
    use_values: bool | None,
    method: str,
    test_size: float,
    leave_k: int,
    folds: int,
    cut: int | None,
    seed: int,
    relevance: str,
    cold_users: str,
    json_out: str | None,
    progress: bool | None,
    params: Sequence[str],
    metric: str,
    final: bool,
) -> None:
    """Grid-search MODEL's parameters on a validation split carved from the training part."""
    from recsys.evaluation.report import format_table
    from recsys.evaluation.tuning import parse_assignment, parse_metric, parse_values, tune as run_tuning

    grid: dict[str, list[Any]] = {}
    for text in params:
        name, values = parse_assignment(text)
        if name in grid:
            raise ConfigError(f"--param {name} given twice")
        grid[name] = parse_values(values)
    parse_metric(metric)
    spec = _split_spec(method, test_size, leave_k, folds, cut, seed)
    source = _input(config_path, data_path, fmt, catalog, use_values)
    settings = EvaluationSettings(
        relevance_threshold=parse_relevance(relevance),
        cold_users=cold_users,  # type: ignore[arg-type]
        weighting=source.weighting,
    )
    loaded = load_input(source.path, source.format, source.catalog, strict=source.strict, mapping=source.mapping)
    result = run_tuning(
        model,
        grid,
        loaded.interactions,
        metric,
        catalog=loaded.catalog,
        split=spec,
        settings=settings,
        final=final,
        dataset_info=loaded.info,
        progress=progress,
    )
    document = result.to_dict()
    rows: dict[str, dict[str, Any]] = {}
    for trial in document["trials"]:
        label = " ".join(f"{key}={json.dumps(value)}" for key, value in trial["params"].items()) or "(defaults)"
        rows[label] = trial.get("validation") or {"error": trial.get("error")}
    lines = [
        f"validation: {_split_line(document['validation_split'])}  (carved from the train part)",
        format_table(rows, first_column="configuration (validation scores)"),
        "",
    ]
    if result.best_params is None:
        lines.append("best: none (every configuration failed)")
    else:
        lines.append(f"best on validation: {json.dumps(result.best_params)}  {metric} = {result.best_value:.4f}")
    if document["test"]:
        test_metrics = document["test"]["metrics"]
        lines.append(f"test: {_split_line(document['split'])}")
        lines.append(
            f"best refitted on train, scored on test: {metric} = {test_metrics.get(metric)}"
            if test_metrics.get(metric) is None
            else f"best refitted on train, scored on test: {metric} = {test_metrics[metric]:.4f}"
        )
        lines.append(format_table({"test": test_metrics}, first_column="split"))
    _emit(document, json_out, "\n".join(lines))
    if result.best_params is None:
        raise ModelError(f"{model}: every configuration failed; first error: {document['trials'][0].get('error')}")
