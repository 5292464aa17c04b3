"""``recsys train``: data -> dataset -> fitted models -> precomputed lists, in a run folder.

The run is built in ``<out>/.tmp-<run id>/`` and renamed to ``<out>/<run id>/`` only when
everything is written, so a folder with ``metadata.json`` is always a complete run (format:
recsys.runs, docs/run-format.md). Lists are computed with the models' batched
``iter_recommend_all`` / ``iter_similar_all`` and each batch is written to its Parquet file
as it comes (one row group a batch), so memory holds one batch of lists at a time, never a
loop per user and never all lists of a model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from recsys.data import schema
from recsys.data.dataset import Dataset, align_catalog
from recsys.errors import ConfigError, DataError, ModelError
from recsys.models.base import Recommender, top_n
from recsys.models.registry import get_model_class
from recsys.pipeline.config import AUTO, PipelineConfig
from recsys.pipeline.memory import PeakMemory, megabytes
from recsys.runs.folder import (
    CATALOG_FILE,
    ITEMS_FILE,
    METADATA_FILE,
    MODELS_FOLDER,
    RUN_FORMAT_VERSION,
    USERS_FILE,
    completed_runs,
    new_run_id,
    write_catalog,
)
from recsys.privacy.tombstones import drop_forgotten
from recsys.runs.lists import BECAUSE, CONFIDENCE, LIFT, ListWriter, string_array
from recsys.store.codec import POPULAR, TRENDING, default_reason
from recsys.store.keys import OVERALL

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

ITEM_BATCH = 4096
#: Users per ``recommend`` call when lists are made for the active users only: several of
#: the model's own blocks, so that it can spread them over its threads.
USER_BATCH = 32_768
SECONDS_PER_DAY = 86_400


@dataclass
class LoadedInput:
    """Interactions (schema columns) and optional catalogue, with what validation found."""

    interactions: pd.DataFrame
    catalog: pd.DataFrame | None = None
    report: dict[str, Any] = field(default_factory=dict)
    source: Any = None


class Timer:
    """Collects step durations and peak memory; every step logs its duration, peak and counts."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self.memory = PeakMemory()

    @contextmanager
    def step(self, name: str, **counts: Any) -> Iterator[dict[str, Any]]:
        details: dict[str, Any] = dict(counts)
        self.memory.begin()
        started, cpu_started = time.perf_counter(), time.process_time()
        yield details
        elapsed = time.perf_counter() - started
        self.seconds[name] = round(elapsed, 4)
        # CPU seconds of every thread: beside the wall time, a figure that a busy machine
        # does not inflate (and above it when several cores worked).
        self.cpu_seconds[name] = round(time.process_time() - cpu_started, 4)
        self.peak_rss_mb[name] = megabytes(self.memory.end())
        extra = ", ".join(f"{k}={v}" for k, v in details.items())
        log.info("%s: %.2fs, peak RSS %.0f MB%s", name, elapsed, self.peak_rss_mb[name], f" ({extra})" if extra else "")

    def memory_report(self) -> dict[str, Any]:
        """metadata.json's ``peak_rss_mb``: overall and per step, in MB."""
        return {"overall": megabytes(self.memory.overall()), "steps": dict(self.peak_rss_mb), "method": self.memory.method}


def _jsonable(value: Any) -> Any:
    """A validation report (pydantic model, dataclass, mapping...) as plain JSON data."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "to_dict") and not isinstance(value, pd.DataFrame):
        return _jsonable(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def load_input(config: PipelineConfig) -> LoadedInput:
    """Read the configured data source with the project's loader (validating it)."""
    if not config.data.path:
        raise ConfigError("data.path: no data source configured (set it in the file or pass --data)")
    try:
        from recsys.data.loaders import load
    except ModuleNotFoundError as error:
        raise ConfigError(f"data.path: the data loader is not available ({error})") from None
    loaded = load(
        config.data.path,
        format=config.data.format,
        catalog=config.data.catalog,
        strict=config.data.validation == "strict",
        mapping=config.data,
    )
    return LoadedInput(
        interactions=loaded.interactions,
        catalog=getattr(loaded, "catalog", None),
        report=_jsonable(getattr(loaded, "report", {})),
        source=_jsonable(getattr(loaded, "source", config.data.path)),
    )


def missing_requirements(model_class: type[Recommender], dataset: Dataset) -> list[str]:
    """What of the dataset a model needs and the data lacks (an empty basket matrix is none)."""
    missing = []
    for need in sorted(model_class.requires):
        value = getattr(dataset, need, None)
        if value is None or (hasattr(value, "shape") and value.shape[0] == 0) or (hasattr(value, "nnz") and value.nnz == 0):
            missing.append(need)
    return missing


# ---------------------------------------------------------------------------- lists
def _progress(total: int, desc: str, show: bool | None) -> tqdm:
    return tqdm(total=total, desc=desc, unit="row", disable=None if show is None else not show, leave=False)


def list_reason(model: Recommender, dataset: Dataset | None = None) -> str:
    """The reason type of the model's list entries without a because item (docs/api.md):
    trending for the popular model ranking by trending alone, else as
    :func:`~recsys.store.codec.default_reason`."""
    if model.name == "popular" and getattr(model.config, "mode", None) == "trending":
        if dataset is None or dataset.trending is not None:
            return TRENDING
    return default_reason("user", model.name)


def because_block(model: Recommender, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The because item index of every entry of a block of lists: shape of ``ids``, -1 =
    none or padding. One batched ``explain`` per slice of users, the slices on the model's
    threads (the work is numpy and scipy)."""
    from recsys.models.base import resolve_threads, run_blocks

    because = np.full(ids.shape, -1, dtype=np.int64)
    threads = resolve_threads(model.threads)
    step = max(1, -(-len(rows) // threads))

    def work(start: int) -> None:
        part = ids[start : start + step]
        users = np.repeat(np.asarray(rows[start : start + step], dtype=np.int64), part.shape[1])
        because[start : start + len(part)] = model.explain(users, part.ravel()).reshape(part.shape)

    run_blocks(work, range(0, len(rows), step), threads)
    return because


def write_user_lists(
    model: Recommender,
    folder: Path,
    n: int,
    *,
    exclude_seen: bool,
    users: pa.Array,
    items: pa.Array,
    active: np.ndarray | None = None,
    show_progress: bool | None = None,
    reasons: bool = True,
    dataset: Dataset | None = None,
) -> dict[str, Any]:
    """Top-``n`` for every user (or the ``active`` user indices only), written batch by batch
    as ``lists/user.<model>``; the metadata.json entry.

    With ``reasons`` and a model that explains, each batch also gets its entries' because
    items (column ``because``), and the entry the wall and CPU seconds that took
    (``because_seconds``, ``because_cpu_seconds``: the CPU time of every thread of the
    process meanwhile, which a busy machine does not inflate).
    The entry's ``reason`` is the type of entries without a because item."""
    total = model.n_users if active is None else len(active)
    explain = reasons and model.explains
    explain_seconds = explain_cpu = 0.0
    with (
        ListWriter(folder, "user", model.name, n, key_names=users, item_names=items, extra=(BECAUSE,) if explain else ()) as writer,
        _progress(total, f"user lists {model.name}", show_progress) as bar,
    ):

        def write(rows: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> None:
            nonlocal explain_seconds, explain_cpu
            if explain:
                started, cpu_started = time.perf_counter(), time.process_time()
                extra = {BECAUSE: because_block(model, rows, ids)}
                explain_seconds += time.perf_counter() - started
                explain_cpu += time.process_time() - cpu_started
                writer.write(rows, ids, scores, extra)
            else:
                writer.write(rows, ids, scores)
            bar.update(len(rows))

        if active is None:
            for rows, ids, scores in model.iter_recommend_all(n, exclude_seen=exclude_seen):
                write(rows, ids, scores)
        else:
            for start in range(0, len(active), USER_BATCH):
                rows = active[start : start + USER_BATCH]
                ids, scores = model.recommend(rows, n, exclude_seen=exclude_seen)
                write(rows, ids, scores)
    entry = {**writer.close(), "reason": list_reason(model, dataset)}
    if explain:
        entry["because_seconds"] = round(explain_seconds, 4)
        entry["because_cpu_seconds"] = round(explain_cpu, 4)
    return entry


def write_similar_lists(
    model: Recommender, folder: Path, n: int, *, items: pa.Array, show_progress: bool | None = None
) -> dict[str, Any]:
    """Top-``n`` similar items for every item, written batch by batch as ``lists/similar.<model>``."""
    with (
        ListWriter(folder, "similar", model.name, n, key_names=items, item_names=items) as writer,
        _progress(model.n_items, f"similar lists {model.name}", show_progress) as bar,
    ):
        for rows, ids, scores in model.iter_similar_all(n):
            writer.write(rows, ids, scores)
            bar.update(len(rows))
    return writer.close()


def write_together_lists(
    model: Recommender, folder: Path, n: int, *, items: pa.Array, show_progress: bool | None = None
) -> dict[str, Any]:
    """Bought-together for every item from the rules model: scores are the ranking metric
    (confidence or lift, as the model ranks), with confidence and lift columns beside."""
    bought_together = getattr(model, "bought_together", None)
    if bought_together is None:
        raise ModelError(f"{model.name}: has no bought_together(); only the rules model builds these lists")
    rank_by = getattr(model.config, "rank_by", "confidence")
    with (
        ListWriter(folder, "together", None, n, key_names=items, item_names=items, extra=(CONFIDENCE, LIFT)) as writer,
        _progress(model.n_items, "together lists", show_progress) as bar,
    ):
        for start in range(0, model.n_items, ITEM_BATCH):
            rows = np.arange(start, min(start + ITEM_BATCH, model.n_items))
            ids, confidence, lift = bought_together(rows, n)
            writer.write(rows, ids, lift if rank_by == "lift" else confidence, {CONFIDENCE: confidence, LIFT: lift})
            bar.update(len(rows))
    return writer.close()


@dataclass
class PopularLists:
    """Popular items overall and per category: ``labels`` (k+1,) ("" = overall first),
    ``ids`` int32 and ``scores`` float32 of shape (k+1, n), -1 / -inf padding."""

    labels: np.ndarray
    ids: np.ndarray
    scores: np.ndarray
    #: The reason type of the entries: popular, or trending when ranked by trending alone.
    reason: str = POPULAR

    def write(self, folder: Path, items: pa.Array) -> dict[str, Any]:
        """Write ``lists/popular``; the metadata.json entry."""
        with ListWriter(folder, "popular", None, self.ids.shape[1], key_names=self.labels, item_names=items) as writer:
            writer.write(np.arange(len(self.labels)), self.ids, self.scores)
        return {**writer.close(), "reason": self.reason}


def active_users(interactions: pd.DataFrame, users: np.ndarray, days: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Indices of the users with an event in the ``days`` before the newest event of the data.

    The reference is the newest timestamp in the interactions (not the clock), so the same
    data gives the same users whenever the job runs. Users without a dated event are not
    active. Returns (sorted user indices, a report for metadata.json).
    """
    if schema.TIMESTAMP not in interactions or interactions[schema.TIMESTAMP].notna().sum() == 0:
        raise DataError(
            f"lists.active_within_days: the interactions have no {schema.TIMESTAMP!r} values to tell active users from"
        )
    stamps = pd.to_numeric(interactions[schema.TIMESTAMP], errors="coerce")
    newest = float(stamps.max())
    cutoff = newest - days * SECONDS_PER_DAY
    last = stamps.groupby(interactions[schema.USER_ID].astype(str), observed=True, sort=False).max()
    recent = last.index[last.to_numpy() >= cutoff]
    mask = pd.Index(users).isin(recent)
    indices = np.flatnonzero(mask)
    report = {
        "within_days": days,
        "reference": datetime.fromtimestamp(newest, UTC).isoformat(timespec="seconds"),
        "cutoff": datetime.fromtimestamp(cutoff, UTC).isoformat(timespec="seconds"),
        "active": int(len(indices)),
        "inactive": int(len(users) - len(indices)),
    }
    return indices, report


def popular_lists(popularity: np.ndarray, categories: np.ndarray | None, n: int) -> PopularLists:
    """Most popular items overall (row 0, label "") and per category, one sort for all.

    ``popularity`` (n_items,), items with popularity <= 0 never listed; ``categories``
    (n_items,) strings, "" = none. Ties keep the lower item index first, as ``top_n``.
    """
    scores = np.where(popularity > 0, popularity, -np.inf).astype(np.float32)
    overall_ids, overall_scores = top_n(scores[None, :], n)
    labels = [OVERALL]
    ids_rows, score_rows = [overall_ids[0]], [overall_scores[0]]
    if categories is not None:
        codes, names = pd.factorize(pd.Series(categories, dtype="string").fillna(""), sort=True)
        valid = (popularity > 0) & (np.asarray(names)[np.maximum(codes, 0)] != "") & (codes >= 0)
        items = np.flatnonzero(valid)
        if len(items):
            order = np.lexsort((items, -scores[items], codes[items]))
            items, item_codes = items[order], codes[items][order]
            starts = np.r_[0, np.flatnonzero(np.diff(item_codes)) + 1]
            group_sizes = np.diff(np.r_[starts, len(items)])
            rank = np.arange(len(items)) - np.repeat(starts, group_sizes)
            take = rank < n
            group_index = np.repeat(np.arange(len(starts)), group_sizes)
            cat_ids = np.full((len(starts), n), -1, dtype=np.int32)
            cat_scores = np.full((len(starts), n), -np.inf, dtype=np.float32)
            cat_ids[group_index[take], rank[take]] = items[take]
            cat_scores[group_index[take], rank[take]] = scores[items[take]]
            labels += [str(names[c]) for c in item_codes[starts]]
            ids_rows += list(cat_ids)
            score_rows += list(cat_scores)
    return PopularLists(
        np.asarray(labels, dtype=str),
        np.vstack(ids_rows).astype(np.int32),
        np.vstack(score_rows).astype(np.float32),
    )


# ---------------------------------------------------------------------------- run folder
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_tmp(root: Path) -> list[Path]:
    """Remove temp run folders of train processes (on this host) that are gone."""
    removed = []
    if not root.is_dir():
        return removed
    for folder in root.glob(".tmp-*"):
        owner = folder / ".owner"
        try:
            host, pid = owner.read_text().split(":")
        except (OSError, ValueError):
            host, pid = "", "0"
        if host in ("", socket.gethostname()) and not _pid_alive(int(pid or 0)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def prune_runs(root: Path, keep: int, protect: Path | None = None) -> list[Path]:
    """Delete completed runs beyond the newest ``keep`` (never ``protect``)."""
    runs = completed_runs(root)
    doomed = [p for p in runs[: max(0, len(runs) - keep)] if protect is None or p.resolve() != protect.resolve()]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


# ---------------------------------------------------------------------------- train
def train(
    config: PipelineConfig,
    out: str | Path | None = None,
    *,
    data: LoadedInput | None = None,
    events_client: redis.Redis | None = None,
    show_progress: bool | None = None,
) -> Path:
    """Run the training job; the path of the completed run folder.

    ``data`` replaces the configured source (tests, the demo); ``events_client`` is the
    Redis client for ``[data.events] from_redis`` (connected from the config when None).
    """
    return write_run(
        config,
        out,
        lambda folder, run_id, timer: _train_into(folder, run_id, config, data, events_client, timer, show_progress),
        events_client=events_client,
    )


def write_run(
    config: PipelineConfig,
    out: str | Path | None,
    build: Callable[[Path, str, Timer], dict[str, Any]],
    *,
    events_client: redis.Redis | None = None,
) -> Path:
    """The run folder's life, the same for every backend: ``build(folder, run_id, timer)``
    fills ``<out>/.tmp-<run id>/`` and returns its metadata; then metadata.json is written,
    users forgotten meanwhile are scrubbed, the folder is renamed into place (so a folder
    with metadata.json is always complete) and old runs are pruned. On any failure the
    temporary folder goes."""
    timer = Timer()
    run_id = new_run_id()
    root = Path(out if out is not None else config.training.out)
    root.mkdir(parents=True, exist_ok=True)
    for stale in clean_stale_tmp(root):
        log.warning("removed unfinished run folder %s", stale)
    tmp = root / f".tmp-{run_id}"
    tmp.mkdir()
    (tmp / ".owner").write_text(f"{socket.gethostname()}:{os.getpid()}")
    try:
        metadata = build(tmp, run_id, timer)
        with open(tmp / METADATA_FILE, "w", encoding="utf-8") as handle:
            json.dump(metadata, handle, indent=2, allow_nan=False, default=str)
        # Users forgotten while this run trained leave it before it completes.
        late = _tombstones(config, root, events_client)
        if len(late) > (metadata.get("forgotten") or {}).get("tombstones", 0):
            from recsys.privacy.runs import scrub_run

            outcome, _ = scrub_run(tmp, late)
            if outcome == "deleted":
                raise DataError(f"{tmp}: could not remove users forgotten during training from the run")
        (tmp / ".owner").unlink()
        final = root / run_id
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in prune_runs(root, config.training.keep_runs, protect=final):
        log.info("removed old run folder %s", old)
    log.info("run %s complete in %.1fs: %s", run_id, sum(timer.seconds.values()), final)
    return final


def _train_into(
    folder: Path,
    run_id: str,
    config: PipelineConfig,
    data: LoadedInput | None,
    events_client: redis.Redis | None,
    timer: Timer,
    show_progress: bool | None,
) -> dict[str, Any]:
    model_configs = config.model_configs()
    with timer.step("load") as info:
        loaded = data if data is not None else load_input(config)
        info["interactions"] = len(loaded.interactions)
        info["catalog_items"] = len(loaded.catalog) if loaded.catalog is not None else 0
    interactions = loaded.interactions
    events_report: dict[str, Any] | None = None
    if config.data.events.from_redis:
        with timer.step("events") as info:
            events, events_report = _read_events(config, events_client)
            if len(events) and config.data.events.unknown_items == "drop":
                events = _drop_unknown_items(config, events, events_report, loaded, events_client)
            if len(events):
                interactions = pd.concat([interactions, events], ignore_index=True)
            info["events"] = len(events)
    with timer.step("forgotten") as info:
        hashes = _tombstones(config, folder.parent, events_client)
        interactions, dropped_rows, dropped_users = drop_forgotten(interactions, schema.USER_ID, hashes)
        info.update(tombstones=len(hashes), rows=dropped_rows, users=dropped_users)
    forgotten = {"tombstones": len(hashes), "rows_dropped": dropped_rows, "users_dropped": dropped_users}
    if interactions.empty:
        raise DataError(f"{config.data.path or 'input'}: no interactions to train on")

    with timer.step("dataset") as info:
        dataset = Dataset.from_interactions(
            interactions,
            loaded.catalog,
            config.weighting,
            basket_event_types=tuple(config.training.basket_event_types) if config.training.basket_event_types else None,
            trending_half_life_days=config.training.trending_half_life_days,
        )
        info.update(users=dataset.n_users, items=dataset.n_items, nnz=int(dataset.user_items.nnz))
    if dataset.user_items.nnz == 0:
        raise DataError("every interaction has weight 0 (check [weighting] event_weights): nothing to learn from")

    # Decide every model's fate before fitting anything.
    skipped: dict[str, str] = {}
    for name in model_configs:
        missing = missing_requirements(get_model_class(name), dataset)
        if missing:
            reason = f"needs {', '.join(missing)}, which the data has none of"
            if config.training.if_data_missing == "fail":
                raise DataError(f"models.{name}: {reason} (set training.if_data_missing = \"skip\" to skip it)")
            log.warning("skipping model %s: %s", name, reason)
            skipped[name] = reason
    fitted_names = [name for name in model_configs if name not in skipped]
    if not fitted_names:
        raise DataError(f"no configured model can train on this data ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    user_models = [m for m in config.user_models() if m in fitted_names]
    similar_models = [m for m in config.similar_models() if m in fitted_names]
    default_model = config.default_model()
    if default_model in skipped:
        if config.publish.default_model not in (None, AUTO):
            raise DataError(f"publish.default_model: {default_model} cannot train here ({skipped[default_model]})")
        default_model = user_models[0] if user_models else None

    # The served model, chosen on a temporal holdout of this data (recsys.pipeline.selection);
    # it may drop models that fail there, add popular, and tune configurations.
    from recsys.pipeline.selection import select_served_model

    with timer.step("selection") as info:
        selection = select_served_model(
            config, interactions, loaded.catalog, model_configs, fitted_names, user_models, similar_models, default_model, skipped
        )
        info.update(default=selection.default_model, candidates=len(selection.rows))
    model_configs, fitted_names, skipped = selection.model_configs, selection.fitted_names, selection.skipped
    user_models, similar_models, default_model = selection.user_models, selection.similar_models, selection.default_model

    evaluation = _evaluate(config, interactions, loaded.catalog, fitted_names, timer) if config.evaluation.enabled else None

    (folder / MODELS_FOLDER).mkdir()
    dataset.users.save(folder / MODELS_FOLDER / USERS_FILE)
    dataset.items.save(folder / MODELS_FOLDER / ITEMS_FILE)
    # Every item gets a catalogue entry (empty fields without a catalogue): the API knows
    # which items exist from it.
    catalog_frame = dataset.catalog if dataset.catalog is not None else align_catalog(pd.DataFrame({schema.ITEM_ID: []}), dataset.items)
    write_catalog(catalog_frame, folder / CATALOG_FILE)

    lists_cfg = config.lists
    user_names, item_names = string_array(dataset.users.ids), string_array(dataset.items.ids)
    active: np.ndarray | None = None
    active_report: dict[str, Any] | None = None
    if lists_cfg.active_within_days is not None and user_models:
        with timer.step("active_users") as info:
            active, active_report = active_users(interactions, dataset.users.ids, lists_cfg.active_within_days)
            info.update(active=active_report["active"], inactive=active_report["inactive"])
    entries: list[dict[str, Any]] = []
    models_meta: dict[str, Any] = {}
    popular_model: Recommender | None = None
    for name in fitted_names:
        model = get_model_class(name)(model_configs[name])
        model.threads = config.training.threads
        with timer.step(f"fit.{name}") as info:
            model.fit(dataset, show_progress=bool(show_progress))
            info.update(users=model.n_users, items=model.n_items)
        model.save(folder / "models" / name)
        models_meta[name] = {
            "config": model.config.model_dump(mode="json"),
            "path": f"models/{name}",
            "fit_seconds": timer.seconds[f"fit.{name}"],
        }
        if name in user_models:
            with timer.step(f"lists.user.{name}") as info:
                entries.append(
                    write_user_lists(
                        model, folder, lists_cfg.user_n, exclude_seen=lists_cfg.exclude_seen, users=user_names,
                        items=item_names, active=active, show_progress=show_progress, reasons=lists_cfg.reasons,
                        dataset=dataset,
                    )
                )
                info.update(rows=entries[-1]["rows"])
                if "because_seconds" in entries[-1]:
                    info.update(because_seconds=entries[-1]["because_seconds"])
        if name in similar_models:
            with timer.step(f"lists.similar.{name}") as info:
                entries.append(write_similar_lists(model, folder, lists_cfg.similar_n, items=item_names, show_progress=show_progress))
                info.update(rows=entries[-1]["rows"])
        if name == "rules" and lists_cfg.together:
            with timer.step("lists.together") as info:
                entries.append(write_together_lists(model, folder, lists_cfg.together_n, items=item_names, show_progress=show_progress))
                info.update(rows=entries[-1]["rows"])
        if name == "popular":
            popular_model = model
        del model

    # Loud failures: a model without a single list fails (strict) or is dropped (lenient).
    from recsys.pipeline.selection import check_lists

    entries, default_model = check_lists(entries, selection, strict=config.data.validation == "strict")

    if lists_cfg.popular:
        with timer.step("lists.popular") as info:
            if popular_model is None:
                popular_model = get_model_class("popular")().fit(dataset)
            categories = (
                dataset.catalog[schema.CATEGORY].to_numpy(dtype=str)
                if dataset.catalog is not None and lists_cfg.popular_by_category
                else None
            )
            popular = popular_lists(np.asarray(popular_model.popularity), categories, lists_cfg.popular_n)
            popular.reason = list_reason(popular_model, dataset)
            entries.append(popular.write(folder, item_names))
            info.update(categories=len(popular.labels) - 1)

    segments_meta: dict[str, Any] | None = None
    if config.segments.enabled:
        from recsys.pipeline.segments import write_segments

        with timer.step("segments") as info:
            segments_meta, segment_entry = write_segments(
                folder, interactions, loaded.catalog, config.segments, dataset.items.ids
            )
            if segment_entry is not None:
                entries.append(segment_entry)
            info.update(k=(segments_meta or {}).get("k", 0))

    list_users = dataset.n_users if active is None else len(active)
    return {
        "format_version": RUN_FORMAT_VERSION,
        "run": run_id,
        "backend": "local",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": _jsonable(loaded.source),
        "fingerprint": dataset.fingerprint(),
        "counts": {
            "interactions": int(len(interactions)),
            "events": int(events_report["used"]) if events_report else 0,
            "users": dataset.n_users,
            "items": dataset.n_items,
            "nnz": int(dataset.user_items.nnz),
            "ratings": int(dataset.ratings.nnz) if dataset.ratings is not None else 0,
            "baskets": int(dataset.baskets.shape[0]) if dataset.baskets is not None else 0,
            "catalog_items": int(len(loaded.catalog)) if loaded.catalog is not None else 0,
            "list_users": int(list_users) if user_models else 0,
            "inactive_users": int(dataset.n_users - list_users) if user_models else 0,
        },
        "active_users": active_report,
        "validation": loaded.report,
        "events": events_report,
        "forgotten": forgotten,
        "timings": timer.seconds,
        "cpu_seconds": timer.cpu_seconds,
        "peak_rss_mb": timer.memory_report(),
        "config": stored_config(config),
        "models": models_meta,
        "skipped": skipped,
        "default_model": default_model,
        "lists": entries,
        "catalog": CATALOG_FILE,
        "evaluation": evaluation,
        "selection": selection.to_json(),
        **({"segments": segments_meta} if segments_meta is not None else {}),
    }


def stored_config(config: PipelineConfig) -> dict[str, Any]:
    """The configuration as JSON for metadata.json, with any Redis password masked."""
    document = config.model_dump(mode="json")
    if document["redis"].get("url"):
        from recsys.store.connection import redact

        document["redis"]["url"] = redact(document["redis"]["url"])
    return document


def _read_events(config: PipelineConfig, client: redis.Redis | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    from recsys.pipeline.events import read_events
    from recsys.store.connection import connect
    from recsys.store.keys import KeyLayout

    if client is None:
        client = connect(config.redis_url())
    return read_events(
        client,
        KeyLayout(config.key_prefix()),
        max_events=config.data.events.max_events,
        strict=config.data.validation == "strict",
        archive=config.events.archive,
    )


def _drop_unknown_items(
    config: PipelineConfig, events: pd.DataFrame, report: dict[str, Any], loaded: LoadedInput, client: redis.Redis | None
) -> pd.DataFrame:
    """Events of items the shop does not list: out of training and popularity (anyone able
    to post events could otherwise put an invented item into every popular list)."""
    from recsys.pipeline.events import drop_unknown_items, live_catalog_items
    from recsys.store.connection import connect
    from recsys.store.keys import KeyLayout

    known: set[str] = set()
    if loaded.catalog is not None:
        known.update(loaded.catalog[schema.ITEM_ID].astype(str))
    known.update(live_catalog_items(client or connect(config.redis_url()), KeyLayout(config.key_prefix())))
    if not known:
        known.update(loaded.interactions[schema.ITEM_ID].astype(str))
    return drop_unknown_items(events, known, report)


def _tombstones(config: PipelineConfig, runs_root: Path, client: redis.Redis | None) -> set[str]:
    """Tombstones of forgotten users: the runs folder's file, plus Redis' when a client is
    given or events are read from Redis (then merged into the file for runs without
    Redis). A run trained without them is checked again when it is published."""
    from recsys.privacy.tombstones import merge_into_file, read_file, read_redis
    from recsys.store.connection import connect
    from recsys.store.keys import KeyLayout

    stored = read_file(runs_root)
    if client is None and config.data.events.from_redis:
        client = connect(config.redis_url())
    if client is not None:
        from_redis = read_redis(client, KeyLayout(config.key_prefix()))
        if any(k not in stored for k in from_redis):
            stored = merge_into_file(runs_root, from_redis)
    return set(stored)


def _evaluate(
    config: PipelineConfig,
    interactions: pd.DataFrame,
    catalog: pd.DataFrame | None,
    models: list[str],
    timer: Timer,
) -> dict[str, Any]:
    """Holdout metrics per model (see recsys.pipeline.holdout)."""
    from recsys.pipeline.holdout import evaluate_holdout

    with timer.step("evaluate") as info:
        result = evaluate_holdout(config, interactions, catalog, models)
        info["models"] = len(result.get("models", {}))
    return _jsonable(result)
