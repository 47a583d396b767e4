"""A small results directory made by the real pipeline on toy data, shared by the report and compare tests.

Built once per test session (the cache below) because training 2 seeds x 6 strategies takes seconds
even on toy data. It holds: zero-shot, head-only, lora r=2 and r=4, full and combined for seeds 0
and 1 at data fraction 1; head-only and lora r=4 for seed 0 at data fraction 0.5; one failed run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

import backbones
import strategies
from bench.data.synthetic import toy_pair
from bench.metrics import evaluate
from bench.pipeline import PreparedData, adapt, prepare_data, state_of, train_base
from bench.records import RunRecord, write_predictions, write_record, write_references
from bench.train import TrainSettings, predict

DATASET = "toy"
BACKBONE = "cnn-small"
SEEDS = (0, 1)
STRATEGIES = (("zero-shot", {}), ("head-only", {}), ("lora", {"rank": 2}), ("lora", {"rank": 4}),
              ("full", {}), ("combined", {}))
FRACTION_RUNS = (("head-only", {}), ("lora", {"rank": 4}))
FAILED_ERROR = "RuntimeError: CUDA out of memory (toy failure written by the test fixture)"
N_BOOT = 50
REPORT_N_BOOT = 200

_BUILT: dict[str, Path] = {}


def toy_results(root: Path) -> Path:
    """The results directory under `root`, built on the first call of the session and reused after."""
    if "dir" not in _BUILT:
        _BUILT["dir"] = _build(Path(root) / "results")
    return _BUILT["dir"]


def toy_report(root: Path) -> Path:
    """The report directory built from `toy_results(root)`, built once per session."""
    if "report" not in _BUILT:
        from bench.report import build_report

        _BUILT["report"] = build_report(toy_results(root), Path(root) / "report", n_boot=REPORT_N_BOOT,
                                        progress=False).parent
    return _BUILT["report"]


def _build(out: Path) -> Path:
    device = torch.device("cpu")
    data = prepare_data(toy_pair(n_photo=400, n_spec=200, size=16))
    base_settings = TrainSettings(epochs=5, batch_size=32)
    finetune = TrainSettings(epochs=2, batch_size=32)
    tests = {kind: data.sets[kind, "test"] for kind in ("spec", "photo", "combined")}
    write_references(out, DATASET, {**{k: s.z for k, s in tests.items()},
                                    **{f"{k}_true": s.z_true for k, s in tests.items()}})
    for seed in SEEDS:
        base_model, base_result = train_base(BACKBONE, data, base_settings, device=device, seed=seed, progress=False)
        base_state = state_of(base_model)
        for name, params in STRATEGIES:
            _run(out, data, name, params, base_state, base_result.train_seconds, finetune, base_settings, seed, 1.0)
        if seed == 0:
            half = _with_spec_fraction(data, 0.5, seed)
            for name, params in FRACTION_RUNS:
                _run(out, half, name, params, base_state, base_result.train_seconds, finetune, base_settings, seed,
                     0.5)
    write_record(RunRecord(run_id="failed-full-s2", config_hash="failed", suite="toy", dataset=DATASET,
                           backbone=BACKBONE, strategy="full", label="full", params={"bn": "train"}, seed=2,
                           data_fraction=1.0, train_settings={}, status="failed", error=FAILED_ERROR), out)
    return out


def _with_spec_fraction(data: PreparedData, fraction: float, seed: int) -> PreparedData:
    """The same data with only a random `fraction` of the spec-z training set."""
    x, z = data.tensors["spec", "train"]
    keep = np.sort(np.random.default_rng(seed).permutation(len(z))[: int(fraction * len(z))])
    return dataclasses.replace(data, tensors={**data.tensors, ("spec", "train"): (x[keep], z[keep])})


def _run(out: Path, data: PreparedData, name: str, params: dict, base_state: dict, base_seconds: float,
         finetune: TrainSettings, retrain: TrainSettings, seed: int, fraction: float) -> None:
    strategy = strategies.create(name, **params)
    device = torch.device("cpu")
    model, result = adapt(strategy, BACKBONE, base_state, data, finetune, retrain, device=device, seed=seed,
                          progress=False)
    preds, metrics = {}, {}
    for kind in ("spec", "photo", "combined"):
        galaxies = data.sets[kind, "test"]
        preds[kind] = predict(model, data.tensors[kind, "test"][0], device)
        metrics[kind] = evaluate(preds[kind], galaxies.z, galaxies.z_true, n_boot=N_BOOT, seed=seed)
    run_id = f"{strategy.label()}-s{seed}-f{fraction:g}"
    write_predictions(out, run_id, preds)
    write_record(RunRecord(
        run_id=run_id, config_hash=run_id, suite="toy", dataset=DATASET, backbone=BACKBONE, strategy=name,
        label=strategy.label(), params=strategy.params(), seed=seed, data_fraction=fraction, train_settings={},
        status="ok", trainable_params=backbones.count_parameters(model, trainable_only=True),
        total_params=backbones.count_parameters(model), base_train_seconds=base_seconds,
        train_seconds=0.0 if result is None else result.train_seconds,
        epochs=0 if result is None else result.epochs_run,
        images_per_second=0.0 if result is None else result.images_per_second,
        peak_memory_mb=0.0 if result is None else result.peak_memory_mb,
        device="cpu", metrics=metrics), out)
