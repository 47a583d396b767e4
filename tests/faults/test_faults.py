"""Fault injection: runs that would give wrong numbers fail with their reason; hostile input is refused.

Each case reproduces one fault found by a fault-injection pass over the harness (issue
"Nothing silently wrong"), on toy data, in seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from zpeft import backbones, strategies
from zpeft.cli import main
from zpeft.run.atomic import remove_stale_temporaries
from zpeft.run.prepared import MIN_TRAIN_GALAXIES, spec_subsample
from zpeft.run.records import RunRecord, read_predictions, read_records, write_record
from zpeft.run.runner import run_suite
from zpeft.run.suite import SuiteError, parse_suite
from zpeft.training.batches import Inputs
from zpeft.training.loop import TrainingDiverged, train
from zpeft.training.losses import LOSSES
from zpeft.training.settings import TrainSettings


def toy_suite(**overrides) -> dict:
    suite = {"name": "faults", "datasets": [{"name": "toy", "options": {"n_photo": 300, "n_spec": 150}}],
             "backbones": ["cnn-small"], "strategies": ["zero-shot", "head-only"], "device": "cpu",
             "training": {"base": {"epochs": 2, "batch_size": 32}, "finetune": {"epochs": 2, "batch_size": 32}},
             "evaluation": {"n_boot": 10}}
    suite.update(overrides)
    return suite


@pytest.fixture
def nan_loss():
    """A loss that is NaN from the first step, registered for one test."""
    LOSSES.add("nan-test", lambda pred, z: (pred - z).mean() * float("nan"))
    yield "nan-test"
    LOSSES.remove("nan-test")


def test_diverged_training_is_failed_or_returns_its_validated_start(tmp_path):
    """From scratch a diverged training is a failed run; a fine-tune keeps its validated start (no gain), never the
    diverged weights: its predictions are the base model's own."""
    suite = parse_suite(toy_suite(strategies=["zero-shot", {"name": "full", "lr": 1e3},
                                              {"name": "lora", "grid": {"rank": 2}, "lr": 1e3},
                                              {"name": "combined", "lr": 1e3}]))
    summary = run_suite(suite, tmp_path, progress=False)
    records = {r.label: r for r in read_records(tmp_path)}
    assert records["zero-shot"].status == "ok"
    assert records["combined"].status == "failed" and "diverged" in records["combined"].error
    start = read_predictions(tmp_path, records["zero-shot"].run_id)
    for label in ("full", "lora-r2"):
        assert records[label].status == "ok" and records[label].best_epoch == 0
        kept = read_predictions(tmp_path, records[label].run_id)
        assert all(np.allclose(kept[k], start[k], atol=1e-6) for k in start)
    assert summary.failed == 1


def test_a_nan_loss_fails_training_naming_the_epoch(nan_loss):
    model = backbones.create("cnn-small", img_size=8)
    data = Inputs.fitted(torch.randn(64, 5, 8, 8), torch.rand(64))
    with pytest.raises(TrainingDiverged, match=r"training loss is nan at epoch 1 \(lr 0.001\): training diverged"):
        train(model, data, data, TrainSettings(epochs=3, batch_size=32, lr=1e-3, loss=nan_loss), device=torch.device("cpu"),
              seed=0, bn_frozen=False, progress=False)


def test_a_base_model_that_did_not_train_is_never_saved(tmp_path, nan_loss):
    suite = toy_suite(strategies=["zero-shot", "head-only", "combined"])
    suite["training"] = {"base": {"epochs": 2, "batch_size": 32, "loss": nan_loss},
                         "finetune": {"epochs": 2, "batch_size": 32}}
    summary = run_suite(parse_suite(suite), tmp_path, progress=False)
    assert summary.failed == 3 and summary.ok == 0
    assert not list((tmp_path / "base").glob("*.safetensors"))
    for record in read_records(tmp_path):
        assert "training diverged" in record.error


@pytest.mark.parametrize("name", ["../../escape", "/tmp/escape", "..", ".hidden"])
def test_a_suite_name_cannot_leave_the_results_directory(tmp_path, capsys, name):
    with pytest.raises(SuiteError, match="must use only letters"):
        parse_suite(toy_suite(name=name))
    path = tmp_path / "suite.toml"
    path.write_text(f'name = {json.dumps(name)}\ndatasets = ["toy"]\nbackbones = ["cnn-small"]\n'
                    'strategies = ["zero-shot"]\n')
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["run", str(path)]) == 2
    finally:
        os.chdir(cwd)
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite.toml"]


def test_records_made_with_another_thread_count_are_rerun_not_mixed(tmp_path):
    suite = parse_suite(toy_suite(strategies=["zero-shot"]))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert run_suite(suite, tmp_path, progress=False).ok == 1
        assert run_suite(suite, tmp_path, progress=False).skipped == 1
        torch.set_num_threads(2)
        again = run_suite(suite, tmp_path, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert (again.ok, again.skipped) == (1, 0)
    assert [r.device for r in read_records(tmp_path)] == ["cpu (2 threads)"]


def test_records_are_strict_json(tmp_path):
    record = RunRecord(run_id="r", config_hash="h", suite="s", dataset="d", backbone="b", strategy="full",
                       label="full", params={}, seed=0, data_fraction=1.0, train_settings={}, status="ok",
                       metrics={"spec": {"label": {"all": {"bias": float("nan"), "rmse": float("inf")}}}})
    path = write_record(record, tmp_path)

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data["metrics"]["spec"]["label"]["all"] == {"bias": None, "rmse": None}


def test_temporary_files_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    stale = tmp_path / "base" / f".abc.safetensors.{host}-{int(dead.stdout)}.x1y2z3.tmp"
    live = tmp_path / f".run.json.{host}-{os.getpid()}.a1b2c3.tmp"
    elsewhere = tmp_path / f".run.json.another-host-{int(dead.stdout)}.a1b2c3.tmp"
    for path in (stale, live, elsewhere):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert live.exists() and elsewhere.exists() and not stale.exists()


def test_a_lora_rank_above_every_layer_is_refused():
    model = backbones.create("cnn-small", img_size=16)
    with pytest.raises(ValueError, match="lora rank 512 exceeds the smallest dimension of every targeted layer"):
        strategies.create("lora", rank=512).prepare(model)
    strategies.create("lora", rank=32).prepare(backbones.create("cnn-small", img_size=16))  # within the widest layer


def test_a_data_fraction_that_leaves_too_few_galaxies_is_refused():
    with pytest.raises(ValueError, match=rf"keeps 1; fine-tuning needs at least {MIN_TRAIN_GALAXIES}"):
        spec_subsample(90, 0.01, seed=0)
    assert len(spec_subsample(90, 0.5, seed=0)) == 45


def test_a_crop_larger_than_the_images_is_refused_before_any_run(tmp_path):
    with pytest.raises(SuiteError, match="crop 64 is larger than dataset 'toy'.s 16x16 cutouts"):
        run_suite(parse_suite(toy_suite(crop=64)), tmp_path, progress=False)
    assert not list(tmp_path.glob("*.json"))


def test_an_unknown_loss_is_one_line_naming_the_known_ones():
    suite = toy_suite()
    suite["training"] = {"finetune": {"loss": "huber"}}
    with pytest.raises(SuiteError, match=r"\[training.finetune\]: unknown loss 'huber'; known: hsc, l1, mse"):
        parse_suite(suite)


def test_a_huge_declared_hdf5_shape_is_refused_without_reading(tmp_path):
    import time

    import h5py

    from zpeft.data.hdf5 import read_hdf5
    from zpeft.data.validate import validate_file

    path = tmp_path / "huge.hdf5"
    with h5py.File(path, "w") as f:  # a small file declaring 1e8 cutouts it does not hold
        f.create_dataset("image", shape=(10**8, 5, 64, 64), dtype="f2", chunks=(1, 5, 64, 64))
        f.create_dataset("specz_redshift", shape=(10**8,), dtype="f4", chunks=(1024,))
    assert path.stat().st_size < 100_000
    start = time.perf_counter()
    problems = validate_file(path)
    with pytest.raises(ValueError, match=r"key 'image': declares shape \(100000000, 5, 64, 64\) but stores no pixel data"):
        read_hdf5(path, "specz_redshift")
    assert [p.key for p in problems] == ["image"] and time.perf_counter() - start < 30  # not an hour of reading


def _fits_cube(path, n=12):
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    table = Table({"object_id": np.arange(n), "specz_redshift": np.linspace(0.1, 1.0, n).astype(np.float32)})
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((n, 5, 8, 8), np.float32), name="IMAGES"),
                  fits.BinTableHDU(table)]).writeto(path)
    return bytearray(path.read_bytes())


def _set_card(raw: bytearray, key: str, value) -> bytearray:
    at = raw.find(key.ljust(8).encode() + b"= ", 2880)  # in the image extension's header
    raw[at:at + 80] = f"{key:<8}= {value:>20}".ljust(80).encode()
    return raw


def _drop_end_card(raw: bytearray) -> bytearray:
    at = raw.find(b"END" + b" " * 77, 2880)  # the image extension's END card
    return raw[:at] + b" " * 80 + raw[at + 80:]


@pytest.mark.parametrize("damage, message", [
    (lambda raw: _set_card(raw, "BITPIX", 17), "BITPIX = 17 is not a FITS value"),
    (lambda raw: _set_card(raw, "NAXIS4", 10**8), "declares 100000000 x 5 x 8 x 8 data"),
    (_drop_end_card, "before its END card"),
])
def test_hostile_fits_headers_are_one_line_each_and_quiet(tmp_path, capfd, damage, message):
    from zpeft.data.validate import validate_path

    path = tmp_path / "cube.fits"
    path.write_bytes(bytes(damage(_fits_cube(path))))
    problems = validate_path(path)
    assert len(problems) == 1 and message in str(problems[0]) and "HDU 1 header" in str(problems[0])
    assert main(["data", "validate", str(path)]) == 1
    out, err = capfd.readouterr()
    assert len(out.strip().splitlines()) == 1 and "WARNING" not in err


def test_one_bad_cutout_header_is_a_problem_naming_the_file(tmp_path):
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    from zpeft.data.validate import validate_file

    cutouts = tmp_path / "cutouts"
    cutouts.mkdir()
    for i in range(4):
        fits.PrimaryHDU(np.ones((5, 8, 8), np.float32)).writeto(cutouts / f"obj{i}.fits")
    Table({"object_id": np.arange(4), "specz_redshift": np.full(4, 0.5, np.float32)}).write(tmp_path / "cat.ecsv")
    bad = cutouts / "obj2.fits"
    header = bytearray(bad.read_bytes())
    at = header.find(b"BITPIX  = ")
    header[at:at + 80] = f"{'BITPIX':<8}= {17:>20}".ljust(80).encode()
    bad.write_bytes(bytes(header))
    problems = validate_file(cutouts, catalogue=tmp_path / "cat.ecsv")
    assert [p.file for p in problems] == [str(bad)] and "BITPIX = 17" in problems[0].message


def test_a_full_disk_stops_the_suite_in_one_line_keeping_finished_records(tmp_path, monkeypatch, capsys):
    import errno

    import zpeft.run.records

    suite = tmp_path / "suite.toml"
    suite.write_text('name = "disk"\ndatasets = [{ name = "toy", options = { n_photo = 300, n_spec = 150 } }]\n'
                     'backbones = ["cnn-small"]\nstrategies = ["zero-shot", "head-only", "full"]\ndevice = "cpu"\n'
                     '[training.base]\nepochs = 1\n[training.finetune]\nepochs = 1\n')
    real = zpeft.run.records.atomic_write
    written = []

    def filling_up(path, write):
        if len(written) >= 4:  # the first run's references, predictions and record fit, the next predictions too
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(path)
        real(path, write)

    monkeypatch.setattr(zpeft.run.records, "atomic_write", filling_up)
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on the device writing" in err[0] and "records written so far" in err[0]
    monkeypatch.setattr(zpeft.run.records, "atomic_write", real)
    assert [r.status for r in read_records(tmp_path / "out")] == ["ok"]


def test_out_of_memory_halves_the_batch_when_the_suite_asks_and_the_record_says_so(tmp_path, monkeypatch):
    import zpeft.training.loop as loop

    real = loop.train
    batches = []

    def small_memory(model, train_xy, val_xy, settings, **kwargs):  # a device that fits at most 16 images
        batches.append(settings.batch_size)
        if settings.batch_size > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, train_xy, val_xy, settings, **kwargs)

    monkeypatch.setattr(loop, "train", small_memory)
    suite = toy_suite(strategies=["zero-shot", "head-only"])
    suite["training"] = {"base": {"epochs": 1, "batch_size": 64, "oom_retries": 2},
                         "finetune": {"epochs": 1, "batch_size": 64, "oom_retries": 1}}
    run_suite(parse_suite(suite), tmp_path, progress=False)
    records = {r.label: r for r in read_records(tmp_path)}
    assert records["zero-shot"].status == "ok" and records["zero-shot"].base_train_seconds > 0
    assert records["head-only"].status == "failed" and "CUDA out of memory" in records["head-only"].error
    assert batches[:3] == [64, 32, 16]  # the base model: two retries, trained at 16
    suite["training"]["finetune"]["oom_retries"] = 2
    run_suite(parse_suite(suite), tmp_path / "again", progress=False)
    head = next(r for r in read_records(tmp_path / "again") if r.label == "head-only")
    assert (head.status, head.batch_size, head.oom_retries) == ("ok", 16, 2)
