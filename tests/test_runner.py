"""The suite runner: expansion, config hashes, records, resume, failures, base-model reuse, executors, kill safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import zpeft.run.execute
import zpeft.strategies.transfer
from zpeft.run.execute import clear_caches, load_dataset, prepared
from zpeft.run.layout import RECORD_SUFFIX
from zpeft.run.plan import expand, plan_run
from zpeft.run.prepared import spec_subsample, with_fraction
from zpeft.run.records import read_predictions, read_records, read_references
from zpeft.run.runner import describe_dry_run, dry_run, plan_suite, run_suite
from zpeft.run.suite import parse_suite

ROOT = Path(__file__).resolve().parents[1]
TOY = {"name": "toy", "options": {"n_photo": 200, "n_spec": 120, "size": 16, "seed": 0}}
TINY_TRAINING = {"base": {"epochs": 1, "batch_size": 32}, "finetune": {"epochs": 1, "batch_size": 32}}
REQUIRED = ("run_id", "config_hash", "suite", "dataset", "backbone", "strategy", "label", "params", "seed",
            "data_fraction", "train_settings", "status", "trainable_params", "total_params", "train_seconds",
            "base_train_seconds", "device", "dataset_meta", "metrics", "versions", "config", "created_at")


def toy_suite(**changes):
    data = {"name": "toy-test", "datasets": [TOY], "backbones": ["cnn-small"],
            "strategies": ["zero-shot", "head-only", {"name": "lora", "grid": {"rank": [2]}}, "combined"],
            "training": TINY_TRAINING, "evaluation": {"n_boot": 5}, "device": "cpu"}
    data.update(changes)
    return parse_suite(data, source="test")


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Each test starts like a new process: no dataset or base model held in memory."""
    clear_caches()
    yield
    clear_caches()


def record_files(out: Path) -> dict[str, Path]:
    return {p.name[:-len(RECORD_SUFFIX)]: p for p in out.glob(f"*{RECORD_SUFFIX}")}


# --- expansion and hashing ----------------------------------------------------------------------------------------

def test_expansion_counts_runs_and_runs_zero_shot_once_per_cell():
    s = toy_suite(seeds=[0, 1], data_fractions=[0.5, 1.0],
                  strategies=["zero-shot", "head-only", {"name": "lora", "grid": {"rank": [2, 4]}}, "combined"])
    runs = expand(s)
    # per seed: zero-shot once + (head-only, lora r2, lora r4, combined) x 2 fractions
    assert len(runs) == 2 * (1 + 4 * 2)
    zero = [r for r in runs if r.strategy.name == "zero-shot"]
    assert len(zero) == 2 and all(r.data_fraction == 1.0 and r.train is None for r in zero)
    assert sorted({r.data_fraction for r in runs if r.strategy.name == "lora"}) == [0.5, 1.0]


def test_learning_rates_resolve_from_entry_then_section_then_strategy_default():
    s = toy_suite(strategies=[{"name": "head-only", "lr": 5e-4}, {"name": "lora", "grid": {"rank": 2}}, "full",
                              "combined"],
                  training={"base": {"epochs": 3}, "finetune": {"epochs": 2, "lr": 1e-4}})
    by_label = {r.label: r for r in expand(s)}
    assert by_label["head-only"].train.lr == 5e-4
    assert by_label["lora-r2"].train.lr == by_label["full"].train.lr == 1e-4
    assert by_label["full"].train.epochs == 2
    combined = by_label["combined"]
    assert combined.train.epochs == 3 and combined.train.lr == 2e-3 and combined.base is None  # the base budget
    assert by_label["head-only"].base.lr == 2e-3  # zpeft.run.cell.BASE_LR when [training.base] sets none


def test_config_hash_changes_only_with_what_determines_the_result():
    def hashes(s):
        return {p.run.label: p.config_hash for p in (plan_run(r, "meta") for r in expand(s))}

    before = hashes(toy_suite())
    assert before == hashes(toy_suite())
    longer_finetune = hashes(toy_suite(training={**TINY_TRAINING, "finetune": {"epochs": 2, "batch_size": 32}}))
    assert longer_finetune["zero-shot"] == before["zero-shot"] and longer_finetune["combined"] == before["combined"]
    assert longer_finetune["head-only"] != before["head-only"]
    longer_base = hashes(toy_suite(training={**TINY_TRAINING, "base": {"epochs": 2, "batch_size": 32}}))
    assert all(longer_base[k] != before[k] for k in before)
    other_data = {p.run.label: p.config_hash for p in (plan_run(r, "other") for r in expand(toy_suite()))}
    assert all(other_data[k] != before[k] for k in before)


def test_fractions_are_nested_and_thin_only_the_spec_z_part_of_the_combined_set():
    small, large = spec_subsample(100, 0.2, seed=3), spec_subsample(100, 0.5, seed=3)
    assert len(small) == 20 and len(large) == 50 and set(small) <= set(large)
    assert not np.array_equal(small, spec_subsample(100, 0.2, seed=4))
    data = prepared(toy_suite(datasets=[{**TOY, "options": {**TOY["options"], "n_spec": 200}}]).datasets[0], None)
    half = with_fraction(data, 0.5, seed=0)
    n_spec, n_photo = len(data.sets["spec", "train"]), len(data.sets["photo", "train"])
    assert len(half.inputs("spec", "train")) == round(0.5 * n_spec)
    kept_ids = half.sets["spec", "train"].ids
    combined = half.sets["combined", "train"]
    assert len(half.inputs("combined", "train")) == len(combined) == n_photo + len(kept_ids)  # ids disjoint in toy
    assert np.array_equal(combined.ids[-len(kept_ids):], kept_ids)
    assert np.array_equal(half.inputs("combined", "train").z.numpy(), combined.z)
    # The combined rows are the photo-z and kept spec-z pixels themselves, not copies.
    spec_pixels = data.sets["spec", "train"].images.stores[0]
    assert any(store is spec_pixels for store in combined.images.stores)
    assert np.array_equal(combined.images.read(np.arange(n_photo, len(combined))),
                          half.sets["spec", "train"].images.read())
    # The regime validates on as few spectra as it trains on: the spec-z validation split is thinned alike.
    n_val = len(data.sets["spec", "val"])
    assert len(half.sets["spec", "val"]) == round(0.5 * n_val)
    assert set(half.sets["spec", "val"].ids) <= set(data.sets["spec", "val"].ids)
    assert len(half.sets["combined", "val"]) == len(data.sets["photo", "val"]) + round(0.5 * n_val)
    assert half.sets["spec", "test"] is data.sets["spec", "test"]  # test sets untouched
    assert with_fraction(data, 1.0, seed=0) is data


# --- running ------------------------------------------------------------------------------------------------------

def test_a_suite_writes_complete_records_then_resumes_without_redoing_anything(tmp_path, monkeypatch):
    s = toy_suite()
    calls = []
    real_train_base = zpeft.run.execute.train_base
    monkeypatch.setattr(zpeft.run.execute, "train_base", lambda *a, **k: calls.append(1) or real_train_base(*a, **k))

    summary = run_suite(s, tmp_path, progress=False)
    assert (summary.ok, summary.failed, summary.skipped) == (4, 0, 0)
    assert len(calls) == 1  # one base model for zero-shot, head-only and lora; combined needs none
    planned = {p.run_id: p for p in plan_suite(s, progress=False)}
    records = {r.run_id: r for r in read_records(tmp_path)}
    assert records.keys() == planned.keys()
    for run_id, record in records.items():
        raw = json.loads((tmp_path / f"{run_id}.json").read_text())
        assert all(key in raw for key in REQUIRED)
        assert record.status == "ok" and record.error is None
        assert record.config_hash == planned[run_id].config_hash and record.config == planned[run_id].config
        assert run_id.startswith("toy__cnn-small__") and run_id.endswith(record.config_hash[:8])
        assert np.isfinite(record.metrics["spec"]["label"]["all"]["sigma_nmad"])
        assert set(read_predictions(tmp_path, run_id)) == {"spec", "photo", "combined"}
    refs = read_references(tmp_path, "toy")
    assert all(len(read_predictions(tmp_path, rid)["spec"]) == len(refs["spec"]) for rid in records)
    by_label = {r.label: r for r in records.values()}
    assert by_label["zero-shot"].trainable_params == 0 and by_label["zero-shot"].train_seconds == 0
    assert by_label["head-only"].base_train_seconds > 0 and by_label["combined"].base_train_seconds == 0
    assert 0 < by_label["lora-r2"].trainable_params < by_label["combined"].trainable_params
    assert by_label["head-only"].train_settings["epochs"] == 1 and by_label["head-only"].history
    assert by_label["head-only"].dataset_meta["sizes"]["spec/train"] == len(refs["spec"]) * 3  # 60/20/20 split

    mtimes = {run_id: path.stat().st_mtime_ns for run_id, path in record_files(tmp_path).items()}
    clear_caches()  # a new invocation: the base model must come from disk
    again = run_suite(s, tmp_path, progress=False)
    assert (again.ok, again.failed, again.skipped) == (0, 0, 4)
    assert len(calls) == 1
    assert {run_id: path.stat().st_mtime_ns for run_id, path in record_files(tmp_path).items()} == mtimes
    assert describe_dry_run(dry_run(s, tmp_path), tmp_path).endswith(
        "4 runs: 0 to run, 0 to retry (failed before), 4 to skip (recorded ok); base models: 0 on disk, 0 to train")


def test_the_base_model_on_disk_is_reused_by_new_strategies_in_a_later_invocation(tmp_path, monkeypatch):
    run_suite(toy_suite(strategies=["zero-shot"]), tmp_path, progress=False)
    clear_caches()
    monkeypatch.setattr(zpeft.run.execute, "train_base", lambda *a, **k: pytest.fail("base model trained twice"))
    summary = run_suite(toy_suite(strategies=["zero-shot", "head-only"]), tmp_path, progress=False)
    assert (summary.ok, summary.skipped) == (1, 1)
    assert len(list((tmp_path / "base").glob("*.safetensors"))) == 1


def test_a_failing_run_is_recorded_and_the_others_still_run_then_it_is_retried(tmp_path, monkeypatch):
    def broken(self, model):
        raise RuntimeError("head-only exploded")

    monkeypatch.setattr(zpeft.strategies.transfer.HeadOnly, "prepare", broken)
    s = toy_suite()
    summary = run_suite(s, tmp_path, progress=False)
    assert (summary.ok, summary.failed) == (3, 1)
    assert summary.failures[0][1] == "RuntimeError: head-only exploded"
    failed = [r for r in read_records(tmp_path) if r.status == "failed"]
    assert len(failed) == 1 and failed[0].label == "head-only"
    assert "Traceback" in failed[0].error and "head-only exploded" in failed[0].error
    assert "failed: toy__cnn-small__head-only" in summary.text()

    monkeypatch.undo()
    again = run_suite(s, tmp_path, progress=False)
    assert (again.ok, again.failed, again.skipped) == (1, 0, 3)
    assert all(r.status == "ok" for r in read_records(tmp_path))


def test_a_base_model_that_fails_fails_its_runs_once_and_spares_the_scratch_runs(tmp_path, monkeypatch):
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise MemoryError("no room for the base model")

    monkeypatch.setattr(zpeft.run.execute, "train_base", broken)
    summary = run_suite(toy_suite(), tmp_path, progress=False)
    assert (summary.ok, summary.failed) == (1, 3) and len(calls) == 1
    records = {r.label: r for r in read_records(tmp_path)}
    assert records["combined"].status == "ok"
    assert all("no room for the base model" in records[k].error for k in ("zero-shot", "head-only", "lora-r2"))
    assert not (tmp_path / "base").exists() or not list((tmp_path / "base").iterdir())


def test_runs_are_deterministic_given_the_seed(tmp_path):
    s = toy_suite(strategies=["head-only", {"name": "lora", "grid": {"rank": 2}}], data_fractions=[0.7])
    run_suite(s, tmp_path / "a", progress=False)
    clear_caches()
    run_suite(s, tmp_path / "b", progress=False)
    ids = sorted(record_files(tmp_path / "a"))
    assert ids == sorted(record_files(tmp_path / "b")) and len(ids) == 2
    for run_id in ids:
        a, b = read_predictions(tmp_path / "a", run_id), read_predictions(tmp_path / "b", run_id)
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_records_of_a_changed_config_are_reported_as_not_in_the_plan(tmp_path):
    run_suite(toy_suite(strategies=["zero-shot"]), tmp_path, progress=False)
    clear_caches()
    summary = run_suite(toy_suite(strategies=["zero-shot"], evaluation={"n_boot": 6}), tmp_path, progress=False)
    assert (summary.ok, summary.stale) == (1, 1)
    plan = json.loads((tmp_path / "suite" / "plan.json").read_text())
    assert [r["config"]["n_boot"] for r in plan["runs"]] == [6]


def test_ray_executor_without_ray_says_how_to_install_it(tmp_path):
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match=r"executor 'ray' needs Ray: pip install 'zpeft\[ray\]'"):
        run_suite(toy_suite(strategies=["zero-shot"]), tmp_path, executor="ray", progress=False)


@pytest.mark.slow
def test_process_executor_runs_every_run_in_worker_processes(tmp_path):
    s = toy_suite()
    summary = run_suite(s, tmp_path, executor="process", workers=2, progress=False)
    assert (summary.ok, summary.failed) == (4, 0)
    records = read_records(tmp_path)
    assert {r.device for r in records} == {f"cpu ({max(1, len(os.sched_getaffinity(0)) // 2)} threads)"}
    assert len(list((tmp_path / "base").glob("*.json"))) == 1


@pytest.mark.slow
def test_process_executor_records_the_runs_of_a_base_model_that_failed(tmp_path):
    suite = toy_suite()
    suite = replace(suite, base=replace(suite.base, lr=1e30))  # the base model (and combined) diverge to NaN
    summary = run_suite(suite, tmp_path, executor="process", workers=1, progress=False)
    assert (summary.ok, summary.failed) == (0, 4)
    errors = {r.label: r.error for r in read_records(tmp_path)}
    assert all(errors[k].startswith("base model ") and "training diverged" in errors[k]
               for k in ("zero-shot", "head-only", "lora-r2"))
    assert "training diverged" in errors["combined"] and not errors["combined"].startswith("base model ")
    assert not list((tmp_path / "base").glob("*.safetensors"))


@pytest.mark.slow
def test_a_killed_suite_resumes_without_duplicates_or_redone_runs(tmp_path):
    suite_file = tmp_path / "kill.toml"
    suite_file.write_text("""
name = "kill"
datasets = [{ name = "toy", options = { n_photo = 200, n_spec = 120, size = 16, seed = 0 } }]
backbones = ["cnn-small"]
strategies = ["zero-shot", "head-only", { name = "lora", grid = { rank = [2, 4] } }, "full", "combined"]
device = "cpu"
[training.base]
epochs = 1
batch_size = 32
[training.finetune]
epochs = 3
batch_size = 16
[evaluation]
n_boot = 5
""")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "zpeft", "run", str(suite_file), "--out", str(out),
                             "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not record_files(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    before = {run_id: (path.stat().st_mtime_ns, json.loads(path.read_text())["created_at"])
              for run_id, path in record_files(out).items()}
    assert 1 <= len(before) < 6, err.decode()[-2000:]  # killed part-way

    from zpeft.run.suite import load_suite

    summary = run_suite(load_suite(suite_file), out, progress=False)
    assert summary.skipped == len(before) and summary.ok == 6 - len(before) and summary.failed == 0
    files = record_files(out)
    records = read_records(out)  # every record file parses
    assert len(records) == len(files) == 6 and len({r.run_id for r in records}) == 6
    assert all(r.status == "ok" for r in records)
    for run_id, (mtime, created) in before.items():
        assert files[run_id].stat().st_mtime_ns == mtime
        assert json.loads(files[run_id].read_text())["created_at"] == created


def test_a_record_made_on_another_kind_of_device_is_not_taken_as_done(tmp_path):
    s = toy_suite()
    assert run_suite(s, tmp_path, device="cpu", progress=False).ok == 4
    path = next(tmp_path.glob("*head-only*.json"))
    record = json.loads(path.read_text())
    record["device"] = "NVIDIA H100 80GB HBM3"  # as if an earlier run of the suite had used a GPU
    path.write_text(json.dumps(record))
    summary = run_suite(s, tmp_path, device="cpu", progress=False)
    assert (summary.ok, summary.skipped) == (1, 3)
    assert json.loads(path.read_text())["device"].startswith("cpu")


def test_the_progress_weights_share_a_base_model_among_its_runs(tmp_path):
    from zpeft.run.runner import plan_suite, work_weights

    suite = toy_suite(datasets=[{**TOY, "options": {**TOY["options"], "n_spec": 200}}], data_fractions=[0.5, 1.0])
    planned = plan_suite(suite, progress=False)
    weights = work_weights(planned, tmp_path / "base")
    pair = load_dataset(suite.datasets[0])
    n_photo, n_spec = len(pair.photo["train"]), len(pair.spec["train"])
    users = [p for p in planned if p.base_hash]
    scratch = [p for p in planned if not p.base_hash]  # combined: its own photo-z + spec-z set, no base share
    assert set(weights) == {p.run_id for p in planned}
    assert sum(weights[p.run_id] for p in scratch) == pytest.approx(sum(n_photo + p.run.data_fraction * n_spec
                                                                        for p in scratch))
    own = sum(p.run.data_fraction * n_spec if p.run.strategy.trains_on == "spec" else 0.01 * n_spec for p in users)
    assert sum(weights[p.run_id] for p in users) == pytest.approx(own + n_photo)  # one base, shared
