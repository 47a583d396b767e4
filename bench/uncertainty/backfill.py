"""Error bars for runs recorded before zpeft.uncertainty, from their kept weights: no retraining.

Such a record is still done (its configuration, hence its identity, did not change), so `zpeft run`
skips it. This rebuilds each run's model (as `zpeft export` does), checks that it reproduces the
recorded test predictions, predicts the run's own spec-z validation set, and adds `uncertainty`,
`calibration.json` and the catalogues' interval columns exactly as a new run computes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from zpeft.conventions import TEST_SETS
from zpeft.run.records import RunRecord, read_predictions, read_records, write_record

CHECK_TOLERANCE = 1e-4  # rebuilt model's test predictions against the recorded ones (as export's check)


def missing_error_bars(results_dir: str | Path) -> list[RunRecord]:
    """Ok records without error bars."""
    return [r for r in read_records(results_dir) if r.status == "ok" and not r.uncertainty]


def add_error_bars(results_dir: str | Path, *, device: str = "cpu", progress: bool = True) -> list[str]:
    """Add error bars to every ok record of `results_dir` that lacks them; the run ids updated.

    ValueError naming the run when its data changed since (dataset fingerprint or preprocessing) or its rebuilt
    model does not reproduce its recorded predictions: error bars from another model would be wrong numbers.
    """
    from zpeft.training.device import resolve_device

    results_dir = Path(results_dir)
    target = resolve_device(device)
    done = []
    for record in missing_error_bars(results_dir):
        if progress:
            print(f"error bars: {record.run_id}", flush=True)
        _backfill(results_dir, record, target)
        done.append(record.run_id)
    return done


def _backfill(results_dir: Path, record: RunRecord, device: torch.device) -> None:
    from zpeft.run.cell import error_bars, predict_tests
    from zpeft.run.execute import meta_hash
    from zpeft.run.export import load_ok_record, rebuild_model
    from zpeft.run.layout import ResultsLayout
    from zpeft.run.outputs import MODEL_INFO, write_catalogues
    from zpeft.run.prepared import with_fraction

    load_ok_record(results_dir, record.run_id)  # kept outputs and base model intact, else ExportError naming them
    info = json.loads((ResultsLayout(results_dir).run_dir(record.run_id) / MODEL_INFO).read_text())
    data = _prepared(record, info["preprocessing"].get("crop"))
    where = f"run {record.run_id}"
    if meta_hash(data.pair) != record.config.get("dataset", {}).get("meta_hash"):
        raise ValueError(f"{where}: dataset {record.dataset!r} is not the data it was run on (fingerprint differs); "
                         "run the suite again instead")
    if json.loads(json.dumps(data.preprocessor.to_dict())) != info["preprocessing"]:
        raise ValueError(f"{where}: the preprocessing fitted now differs from its model.json; run the suite again")
    model = rebuild_model(results_dir, record, info)
    eval_batch = int(record.train_settings.get("eval_batch_size", 1024))
    recorded = read_predictions(results_dir, record.run_id)
    predictions = predict_tests(model, data, device=device, eval_batch_size=eval_batch)
    for kind in TEST_SETS:
        error = float(np.max(np.abs(predictions[kind] - recorded[kind]), initial=0.0))
        if not error <= CHECK_TOLERANCE:
            raise ValueError(f"{where}: the rebuilt model's {kind} test predictions differ from the recorded ones by "
                             f"{error:.3g}; run the suite again instead")
    train_data = data if not record.train_settings else with_fraction(data, record.data_fraction, record.seed)
    calibrations, uncertainty = error_bars(model, train_data, data, recorded, device=device, seed=record.seed,
                                           eval_batch_size=eval_batch)
    tests = {kind: data.sets[kind, "test"] for kind in TEST_SETS}
    record.outputs = {**record.outputs, **write_catalogues(results_dir, record.run_id, tests, recorded, calibrations)}
    record.uncertainty = uncertainty
    write_record(record, results_dir)


_DATA: dict = {}


def _prepared(record: RunRecord, crop: int | None):
    """The run's dataset, preprocessed at its crop; the last one is kept (consecutive runs share it)."""
    from zpeft.data.registry import load_pair
    from zpeft.run.prepared import prepare_data

    meta = record.dataset_meta
    key = (meta.get("pair_name"), json.dumps(meta.get("options", {}), sort_keys=True), crop)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = prepare_data(load_pair(meta["pair_name"], **meta.get("options", {})), crop=crop)
    return _DATA[key]
