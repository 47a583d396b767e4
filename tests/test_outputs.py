"""Outputs users keep (weights, catalogues) and `zpeft export`, on the `toy` fixture's results (conftest.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from zpeft.cli import main
from zpeft.conventions import TEST_SETS
from zpeft.run.layout import ResultsLayout
from zpeft.run.outputs import outputs_intact, read_catalogue
from zpeft.run.records import read_predictions, read_records

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def data(toy):
    """The toy suite's data, preprocessed as its runs saw it (no crop)."""
    from zpeft.data.registry import load_pair
    from zpeft.run.prepared import prepare_data

    meta = _ok(toy)[0].dataset_meta
    return prepare_data(load_pair(meta["pair_name"], **meta["options"]))


def _ok(toy):
    return [r for r in read_records(toy.results) if r.status == "ok"]


def test_every_ok_run_keeps_a_catalogue_per_test_set_matching_its_predictions(toy, data):
    layout = ResultsLayout(toy.results)
    records = _ok(toy)
    assert {r.label for r in records} == {"zero-shot", "head-only", "lora-r2", "lora-r4", "full", "combined"}
    for record in records:
        assert outputs_intact(toy.results, record.outputs), record.run_id
        predictions = read_predictions(toy.results, record.run_id)
        for kind in TEST_SETS:
            galaxies = data.sets[kind, "test"]
            table = read_catalogue(layout.catalogue(record.run_id, kind))
            assert table.colnames == ["object_id", "z_pred", "z_label", "z_true", "mag_g", "mag_r", "mag_i",
                                      "mag_z", "mag_y", "z_lo_68", "z_hi_68", "z_lo_95", "z_hi_95", "z_quantiles"]
            assert np.array_equal(table["object_id"], galaxies.ids)
            assert np.array_equal(table["z_pred"], predictions[kind])
            assert np.array_equal(table["z_label"], galaxies.z) and np.array_equal(table["z_true"], galaxies.z_true)
            assert np.array_equal(table["mag_i"], galaxies.mags["i"])
            assert table.meta["RUN_ID"] == record.run_id and table.meta["TESTSET"] == kind


def test_weights_kept_are_what_each_strategy_changed(toy):
    for record in _ok(toy):
        kept = {rel.split("/", 2)[2] for rel in record.outputs}
        catalogues = {f"catalogue-{kind}.fits" for kind in TEST_SETS} | {"model.json", "calibration.json"}
        weights = kept - catalogues
        if record.strategy == "lora":
            assert weights == {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"}, record.run_id
        elif record.strategy == "zero-shot":
            assert weights == set(), record.run_id  # its weights are the base model's
        else:
            assert weights == {"model.safetensors"}, record.run_id


def test_a_record_with_a_damaged_catalogue_is_not_done(toy, tmp_path):
    from zpeft.run.plan import PlannedRun
    from zpeft.run.runner import previous_status

    out = tmp_path / "results"
    shutil.copytree(toy.results, out)
    record = next(r for r in _ok(toy) if r.strategy == "full")
    planned = PlannedRun(None, record.config, record.config_hash, record.run_id, None, None)
    assert previous_status(out, planned) == "ok"
    catalogue = ResultsLayout(out).catalogue(record.run_id, "spec")
    catalogue.write_bytes(catalogue.read_bytes()[:-100])
    assert previous_status(out, planned) == "new"
    catalogue.unlink()
    assert previous_status(out, planned) == "new"


def test_peft_runs_keep_base_tensors_training_changed_outside_the_adapter(tmp_path):
    from safetensors.torch import load_file

    from zpeft import backbones
    from zpeft.run.cell import state_of
    from zpeft.run.outputs import save_weights
    from zpeft.strategies import create

    base = state_of(backbones.create("cnn-small", img_size=16))
    net = backbones.create("cnn-small", img_size=16)
    net.load_state_dict(base)
    model = create("lora", rank=2, bn="train").prepare(net)
    assert [p.name for p in save_weights(tmp_path / "frozen", model, base)] == ["adapter_config.json",
                                                                               "adapter_model.safetensors"]
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean += 1.0
    files = save_weights(tmp_path / "train", model, base)
    assert files[-1].name == "base_changes.safetensors"
    (key,) = load_file(files[-1])
    assert key.endswith("running_mean") and torch.equal(load_file(files[-1])[key], bn.running_mean)


def _predict_with_peft(export_dir, data):
    """The export's adapter on a freshly built base network, loaded with plain peft."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from zpeft import backbones
    from zpeft.training.loop import predict

    info = json.loads((export_dir / "model.json").read_text())
    net = backbones.create(info["backbone"], in_chans=info["in_chans"], img_size=info["img_size"])
    net.load_state_dict(load_file(export_dir / "base.safetensors"))
    model = PeftModel.from_pretrained(net, export_dir / "adapter")
    return {kind: predict(model, data.inputs(kind, "test"), torch.device("cpu")) for kind in TEST_SETS}


def test_an_exported_lora_adapter_reloads_with_plain_peft(toy, data, tmp_path):
    run_id = toy.run_id("lora-r2", seed=0)
    assert main(["export", f"{toy.results}/{run_id}", "-o", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 2
    got = _predict_with_peft(tmp_path, data)
    expected = read_predictions(toy.results, run_id)
    for kind in TEST_SETS:
        np.testing.assert_allclose(got[kind], expected[kind], atol=TOLERANCE, rtol=0)


# Loads the program and predicts with torch and numpy only, then says whether zpeft was ever imported.
NO_ZPEFT = """
import sys, numpy as np, torch
model = torch.export.load(sys.argv[1]).module()
with np.load(sys.argv[2]) as raw, torch.no_grad():
    np.savez(sys.argv[3], **{kind: model(torch.from_numpy(raw[kind])).numpy() for kind in raw.files})
print(any(m == "zpeft" or m.startswith("zpeft.") for m in sys.modules))
"""


@pytest.mark.parametrize("label", ["lora-r4", "full", "zero-shot", "combined"])
def test_the_exported_program_predicts_as_the_run_without_zpeft(toy, data, tmp_path, label):
    from zpeft.run.export import export_run

    run_id = toy.run_id(label, seed=1)
    export_run(toy.results, run_id, tmp_path / "export")
    np.savez(tmp_path / "raw.npz", **{kind: data.sets[kind, "test"].images.read().astype(np.float32)
                                      for kind in TEST_SETS})
    out = subprocess.run([sys.executable, "-c", NO_ZPEFT, str(tmp_path / "export" / "model.pt2"),
                          str(tmp_path / "raw.npz"), str(tmp_path / "z.npz")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    expected = read_predictions(toy.results, run_id)
    with np.load(tmp_path / "z.npz") as got:
        for kind in TEST_SETS:
            np.testing.assert_allclose(got[kind], expected[kind], atol=TOLERANCE, rtol=0)


def test_the_exported_preprocessing_is_the_preprocessors_with_a_crop():
    from zpeft.data.preprocess import Preprocessor
    from zpeft.data.rows import crop_window
    from zpeft.run.export import RawImageRegressor

    raw = (torch.randn(8, 5, 20, 20) * 0.05 + torch.rand(8, 5, 1, 1)).numpy()
    prep = Preprocessor.fit(raw, crop=11)
    rows, cols = crop_window(raw.shape, 11)
    expected = prep(torch.from_numpy(raw[:, :, rows, cols].copy()))
    module = RawImageRegressor(torch.nn.Identity(), prep.to_dict(), (20, 20))
    torch.testing.assert_close(module(torch.from_numpy(raw)), expected, atol=1e-6, rtol=0)


def _export_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("zpeft export: ")
    return err


def test_export_refuses_a_failed_or_unknown_run_and_damaged_weights(toy, tmp_path, capsys):
    failed = next(r.run_id for r in read_records(toy.results) if r.status == "failed")
    err = _export_error(["export", f"{toy.results}/{failed}", "-o", str(tmp_path / "x")], capsys)
    assert f"run {failed} failed" in err and toy.failure in err
    err = _export_error(["export", f"{toy.results}/no-such-run", "-o", str(tmp_path / "x")], capsys)
    assert "no run 'no-such-run'" in err and "no-such-run.json" in err
    assert not (tmp_path / "x").exists()

    out = tmp_path / "results"
    shutil.copytree(toy.results, out)
    run_id = toy.run_id("lora-r2", seed=0)
    adapter = ResultsLayout(out).run_dir(run_id) / "adapter" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:100])
    err = _export_error(["export", f"{out}/{run_id}", "-o", str(tmp_path / "y")], capsys)
    assert str(adapter) in err and "missing or not matching the checksum" in err
    adapter.unlink()
    assert str(adapter) in _export_error(["export", f"{out}/{run_id}.json", "-o", str(tmp_path / "y")], capsys)
