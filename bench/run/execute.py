"""One planned run, start to finish, in whatever process runs it: data, base model, strategy, scores, record.

Everything here works from a PlannedRun and a RunContext alone, so the local, process and Ray
executors share it. Each process keeps the last dataset it loaded (raw and preprocessed) and
the last base model it used, so consecutive runs of one cell load nothing twice. A run that
raises is recorded as failed with its traceback; the suite goes on.
"""

from __future__ import annotations

import errno
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from zpeft import backbones
from zpeft.checksum import sha256_file
from zpeft.conventions import SPLITS, TEST_SETS
from zpeft.data import DatasetPair, GalaxySet
from zpeft.run.basestore import BaseStore
from zpeft.run.cell import run_cell, state_of, train_base
from zpeft.run.layout import ResultsLayout
from zpeft.run.outputs import model_info, write_outputs
from zpeft.run.plan import PlannedRun
from zpeft.run.prepared import PreparedData, prepare_data, with_fraction
from zpeft.run.pretrained import own_preprocessing, pretrained_result, pretrained_state
from zpeft.run.provenance import versions
from zpeft.run.records import TEMPLATE_SUFFIX, RunRecord, config_hash, write_predictions, write_record, write_references
from zpeft.run.suite import DatasetSpec
from zpeft.training.device import device_name, resolve_device
from zpeft.training.settings import TrainResult, TrainSettings

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
VOLATILE_META = frozenset({"timing_s", "zpeft_version", "created_at", "written_at"})


@dataclass(frozen=True)
class RunContext:
    """Where records go and how runs execute; picklable, so worker processes get it as it is."""

    out: Path
    suite: str
    device: str = "auto"
    progress: bool = True
    threads: int | None = None  # torch threads each run uses (part of what makes a CPU record "done")

    @property
    def bases(self) -> BaseStore:
        return BaseStore(ResultsLayout(self.out).bases)


# --- per-process caches -------------------------------------------------------------------------------------------

_PAIR: dict[tuple, DatasetPair] = {}
_PREPARED: dict[tuple, PreparedData] = {}
_BASE: dict[str, tuple[dict[str, Tensor], TrainResult]] = {}
_BASE_FAILED: dict[str, str] = {}  # digest -> traceback: a base that failed is not retried by every run needing it
_VERSIONS: dict = {}


def load_dataset(spec: DatasetSpec) -> DatasetPair:
    """The dataset pair of `spec`, loaded once per process (only the last one is kept: pairs can be large)."""
    key = spec.key()
    if key not in _PAIR:
        from zpeft.data.registry import load_pair

        clear_caches()
        _PAIR[key] = load_pair(spec.name, **spec.options)
    return _PAIR[key]


def meta_hash(pair: DatasetPair) -> str:
    """Fingerprint of what the loader says the data are (source, preset, seed, label model, config hashes...).

    Keys that describe how long or by which version the data were made, not what they are, are
    left out, so regenerating identical data (another machine, a new release) keeps the records valid.
    """
    return config_hash({"name": pair.name, "meta": {k: v for k, v in pair.meta.items() if k not in VOLATILE_META}})


def prepared(spec: DatasetSpec, crop: int | None) -> PreparedData:
    """Preprocessed tensors of `spec` at `crop`, computed once per process."""
    key = (spec.key(), crop)
    if key not in _PREPARED:
        pair = load_dataset(spec)
        _PREPARED.clear()
        _PREPARED[key] = prepare_data(pair, crop=crop)
    return _PREPARED[key]


def clear_caches() -> None:
    """Drop cached datasets and base models (before loading another, or before forking workers)."""
    _PAIR.clear()
    _PREPARED.clear()
    _BASE.clear()
    _BASE_FAILED.clear()


def _versions() -> dict:
    if not _VERSIONS:
        _VERSIONS.update(versions())
    return dict(_VERSIONS)


# --- base models --------------------------------------------------------------------------------------------------

def ensure_base(planned: PlannedRun, data: PreparedData, device: torch.device,
                ctx: RunContext) -> tuple[dict[str, Tensor], TrainResult]:
    """The base model a run starts from: from this process's cache, from disk, or trained now and saved.

    With pretrained weights (`run.pretrained`) the base model is those weights, saved as they are, untrained.
    """
    digest = planned.base_hash
    if digest is None:
        raise ValueError(f"run {planned.run_id} starts from scratch; it has no base model")
    if digest in _BASE_FAILED:
        raise RuntimeError(f"base model {digest} failed to train earlier in this process:\n{_BASE_FAILED[digest]}")
    store = ctx.bases
    if digest in _BASE and not store.has(digest):
        # Cached in this process for another results directory (or its file was damaged): every results
        # directory keeps the base models its records were made from.
        store.save(digest, *_BASE[digest], planned.base_config)
    if digest not in _BASE:
        if store.has(digest):
            loaded = store.load(digest)
        elif planned.run.pretrained is not None:
            loaded = (pretrained_state(planned.run.pretrained, data.in_chans, data.img_size), pretrained_result())
            store.save(digest, loaded[0], loaded[1], planned.base_config)
        else:
            run = planned.run
            try:
                model, result = train_base(run.backbone, data, run.base, device=device, seed=run.seed,
                                           progress=ctx.progress)
            except Exception:
                _BASE_FAILED[digest] = traceback.format_exc()
                raise
            loaded = (state_of(model), result)
            store.save(digest, loaded[0], result, planned.base_config)
        _BASE.clear()
        _BASE[digest] = loaded
    return _BASE[digest]


def train_base_job(planned: PlannedRun, ctx: RunContext) -> str | None:
    """Make sure the base model of `planned` is on disk; the traceback when that fails (for executors)."""
    try:
        if not ctx.bases.has(planned.base_hash):
            ensure_base(planned, prepared(planned.run.dataset, planned.run.crop), resolve_device(ctx.device), ctx)
        return None
    except Exception:
        return traceback.format_exc()


# --- one run ------------------------------------------------------------------------------------------------------

def execute_run(planned: PlannedRun, ctx: RunContext) -> RunRecord:
    """Run, score and record one planned run; failures become failed records rather than exceptions.

    A full disk is the exception: no record could be written, so it stops the suite (the CLI says
    so in one line), keeping every record already written.
    """
    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    try:
        record = _execute(planned, ctx)
    except OSError as err:
        if err.errno in DISK_FULL:
            raise
        record = failed_record(planned, ctx, traceback.format_exc())
    except Exception:
        record = failed_record(planned, ctx, traceback.format_exc())
    write_record(record, ctx.out)
    return record


def failed_record(planned: PlannedRun, ctx: RunContext, error: str) -> RunRecord:
    """The record of a run that did not finish: its identity and the error."""
    return _record(planned, ctx, "failed", error=error)


def _execute(planned: PlannedRun, ctx: RunContext) -> RunRecord:
    run = planned.run
    device = resolve_device(ctx.device)
    data = own_preprocessing(prepared(run.dataset, run.crop), run.pretrained)
    base_state, base_result = ensure_base(planned, data, device, ctx) if run.needs_base else (None, None)
    train_data = data if run.train is None else with_fraction(data, run.data_fraction, run.seed)
    settings = run.train or run.base  # zero-shot trains nothing: it predicts as its base model was validated
    eval_batch = (settings or TrainSettings()).eval_batch_size
    cell = run_cell(run.strategy, run.backbone, base_state, train_data, data, run.train, device=device, seed=run.seed,
                    n_boot=run.n_boot, eval_batch_size=eval_batch, progress=ctx.progress)
    model, result = cell.model, cell.result
    tests = {kind: data.sets[kind, "test"] for kind in TEST_SETS}
    write_references(ctx.out, run.dataset.label, test_references(tests))
    predictions_file = write_predictions(ctx.out, planned.run_id, cell.predictions)
    info = model_info(run.backbone, data.in_chans, data.img_size, tuple(data.sets["photo", "train"].images.shape[-2:]),
                      data.preprocessor, run.strategy.name, run.strategy.params())
    outputs = write_outputs(ctx.out, planned.run_id, model, base_state, info, tests, cell.predictions,
                            trained=run.strategy.trains_on != "none", calibrations=cell.calibrations)
    sizes = {f"{kind}/{split}": len(train_data.sets[kind, split])
             for kind in TEST_SETS for split in SPLITS}
    measured = dict(
        trainable_params=backbones.count_parameters(model, trainable_only=True),
        total_params=backbones.count_parameters(model),
        base_train_seconds=0.0 if base_result is None else base_result.train_seconds,
        device=device_name(device) if result is None else result.device,
        dataset_meta={**data.pair.meta, "pair_name": data.pair.name, "options": run.dataset.options,
                      "meta_hash": planned.config["dataset"]["meta_hash"], "sizes": sizes},
        metrics=cell.metrics,
        uncertainty=cell.uncertainty,
        predictions_sha256=sha256_file(predictions_file),
        outputs=outputs,
        data_storage=data.storage,
    )
    if result is not None:
        measured.update(train_seconds=result.train_seconds, epochs=result.epochs_run, best_epoch=result.best_epoch,
                        images_seen=result.images_seen, images_per_second=result.images_per_second,
                        peak_memory_mb=result.peak_memory_mb, memory_kind=result.memory_kind, step_mode=result.step_mode,
                        batch_size=result.batch_size, oom_retries=result.oom_retries,
                        train_data_on=result.data_on, history=result.history, ended_by=result.ended_by,
                        lr_cuts=result.lr_cuts)
    return _record(planned, ctx, "ok", **measured)


def test_references(tests: dict[str, GalaxySet]) -> dict[str, np.ndarray]:
    """What `write_references` stores: each test set's labels, and its true z, template fit and yardsticks where
    known."""
    return {**{k: s.z for k, s in tests.items()},
            **{f"{k}_true": s.z_true for k, s in tests.items() if s.z_true is not None},
            **{k + TEMPLATE_SUFFIX: s.z_template for k, s in tests.items() if s.z_template is not None},
            **{f"{k}_{name}": z for k, s in tests.items() for name, z in s.yardsticks.items()}}


def _record(planned: PlannedRun, ctx: RunContext, status: str, **fields) -> RunRecord:
    run = planned.run
    return RunRecord(
        run_id=planned.run_id, config_hash=planned.config_hash, suite=ctx.suite, dataset=run.dataset.label,
        backbone=run.backbone, strategy=run.strategy.name, label=run.label, params=run.strategy.params(),
        seed=run.seed, data_fraction=run.data_fraction, train_settings={} if run.train is None else asdict(run.train),
        lr_source=run.lr_source, lr_grid=list(run.lr_grid), base_lr_source=run.base_lr_source, status=status, versions=_versions(), config=planned.config,
        **fields)
