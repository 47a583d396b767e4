"""Pretrained base weights, own preprocessing, own architectures: what reads, what is refused, what reruns."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from zpeft import backbones
from zpeft.backbones import BACKBONES, register_backbone
from zpeft.backbones.regressor import Regressor
from zpeft.cli import main
from zpeft.data.registry import load_pair
from zpeft.run.export import export_run
from zpeft.run.layout import ResultsLayout
from zpeft.run.pretrained import WeightsError, match_keys, read_preprocessing, read_weights
from zpeft.run.records import read_records
from zpeft.run.runner import dry_run, run_suite
from zpeft.run.suite import SuiteError, load_suite, parse_suite

TOY = {"name": "toy", "options": {"n_photo": 200, "n_spec": 160, "size": 16}}
TRAINING = {"base": {"epochs": 1, "batch_size": 32}, "finetune": {"epochs": 1, "batch_size": 32}}


def cnn_state(width: int = 16, **kw) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return backbones.create("cnn-small", in_chans=5, img_size=16, width=width, **kw).state_dict()


def write_suite(path: Path, backbone, strategies=("zero-shot",), datasets=(TOY,), **extra) -> Path:
    suite = {"name": path.stem, "datasets": list(datasets), "backbones": [backbone], "strategies": list(strategies),
             "device": "cpu", "training": TRAINING, "evaluation": {"n_boot": 10}, **extra}
    path.write_text(json_to_toml(suite))
    return path


def json_to_toml(data: dict) -> str:
    """The few TOML shapes these suites need (tables of scalars, lists, inline tables)."""
    def value(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    top = [f"{k} = {value(v)}" for k, v in data.items() if k != "training"]
    sections = [f"[training.{name}]\n" + "\n".join(f"{k} = {value(v)}" for k, v in table.items())
                for name, table in data.get("training", {}).items()]
    return "\n".join(top + sections) + "\n"


# --- reading weights ----------------------------------------------------------------------------------------------

def test_weights_read_from_safetensors_state_dicts_and_checkpoints_map_onto_the_network(tmp_path):
    state = cnn_state()
    bare = {k.removeprefix("net."): v for k, v in state.items()}
    save_file(state, tmp_path / "zpeft.safetensors")
    save_file(bare, tmp_path / "bare-safetensors.bin")  # found by its header, whatever the suffix
    torch.save(bare, tmp_path / "bare.pt")
    torch.save({"epoch": 3, "args": argparse.Namespace(lr=0.1), "state_dict": {f"module.{k}": v for k, v in bare.items()}},
               tmp_path / "timm-checkpoint.pth.tar")
    for name in ("zpeft.safetensors", "bare-safetensors.bin", "bare.pt", "timm-checkpoint.pth.tar"):
        mapped = match_keys(read_weights(tmp_path / name), state, tmp_path / name, "cnn-small")
        assert list(mapped) == list(state) and all(torch.equal(mapped[k], state[k]) for k in state), name


@pytest.mark.parametrize("problem", ["missing", "shape"])
def test_weights_that_do_not_fit_name_the_keys_and_the_file(tmp_path, problem):
    state = cnn_state()
    if problem == "missing":
        given = {("net.1.3.w" if k == "net.1.3.weight" else k): v for k, v in state.items()}
        expected = ["missing keys net.1.3.weight", "unexpected keys net.1.3.w"]
    else:
        given = cnn_state(width=8)
        expected = ["other shapes", "net.0.0.0.weight (8, 5, 3, 3) (network (16, 5, 3, 3))"]
    with pytest.raises(WeightsError) as err:
        match_keys(given, state, tmp_path / "w.safetensors", "cnn-small")
    assert str(tmp_path / "w.safetensors") in str(err.value) and "\n" not in str(err.value)
    assert all(text in str(err.value) for text in expected), str(err.value)


@pytest.mark.parametrize("kind", ["pickled model", "text", "text.safetensors", "wrong keys"])
def test_bad_weights_stop_the_run_in_one_line_with_exit_2_and_nothing_written(tmp_path, kind, capsys):
    weights = tmp_path / ("weights.safetensors" if kind in ("text.safetensors", "wrong keys") else "weights.pt")
    if kind == "pickled model":
        torch.save(backbones.create("cnn-small", img_size=16), weights)
        expected = "pickled Python objects"
    elif kind.startswith("text"):
        weights.write_text("these are not weights\n")
        expected = "not a safetensors file" if kind == "text.safetensors" else "not a weights file"
    else:
        save_file({k.replace("net.1.", "net.9."): v for k, v in cnn_state().items()}, weights)
        expected = "missing keys net.1."
    suite = write_suite(tmp_path / "suite.toml", {"name": "cnn-small", "weights": weights.name})
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(weights) in err and expected in err, err
    assert not out.exists()


def test_preprocessing_is_read_checked_and_goes_with_weights(tmp_path):
    path = tmp_path / "preprocessing.json"
    path.write_text(json.dumps({"sky_sigma": [0.1, 0.2], "mean": [1.0, 2.0], "std": [3.0, 4.0], "crop": None}))
    prep, source = read_preprocessing("preprocessing.json", base_dir=tmp_path)
    assert (prep.sky_sigma, prep.mean, prep.std, prep.crop, source) == ((0.1, 0.2), (1.0, 2.0), (3.0, 4.0), None,
                                                                       str(path))
    inline, _ = read_preprocessing({"sky_sigma": [0.5]}, crop=8)
    assert (inline.mean, inline.std, inline.crop) == ((0.0,), (1.0,), 8)
    with pytest.raises(WeightsError, match="made for crop None, the suite crops 8"):
        read_preprocessing(path, crop=8)
    with pytest.raises(WeightsError, match="sky_sigma must be a list of finite numbers > 0"):
        read_preprocessing({"sky_sigma": [0.0]})
    save_file(cnn_state(), tmp_path / "w.safetensors")
    with pytest.raises(SuiteError, match=r"backbones\[0\].*'preprocessing' goes with 'weights'"):
        load_suite(write_suite(tmp_path / "s.toml", {"name": "cnn-small", "preprocessing": "preprocessing.json"}))


# --- identity, round trip -----------------------------------------------------------------------------------------

def test_an_exported_model_is_the_pretrained_base_of_another_suite_and_its_weights_hash_is_its_identity(tmp_path):
    first = parse_suite({"name": "first", "datasets": [TOY], "backbones": ["cnn-small"], "device": "cpu",
                         "strategies": [{"name": "lora", "grid": {"rank": [2]}}], "training": TRAINING,
                         "evaluation": {"n_boot": 10}})
    run_suite(first, tmp_path / "first", progress=False)
    (lora,) = read_records(tmp_path / "first")
    export_run(tmp_path / "first", "toy__cnn-small__lora-r2", tmp_path / "exported")  # a run id's start is enough

    # The same data, and another sample whose own statistics differ from the exported preprocessing's.
    other = {"name": "toy", "options": {**TOY["options"], "seed": 7}, "label": "other"}
    suite_file = write_suite(tmp_path / "second.toml", {"name": "cnn-small", "weights": "exported/merged.safetensors",
                                                         "preprocessing": "exported/preprocessing.json"},
                             strategies=("zero-shot", "head-only"), datasets=(TOY, other))
    summary = run_suite(load_suite(suite_file), tmp_path / "second", progress=False)
    assert (summary.ok, summary.failed) == (4, 0)
    records = {r.label: r for r in read_records(tmp_path / "second") if r.dataset == "toy"}
    assert records["head-only"].base_train_seconds == 0.0 and records["head-only"].epochs > 0
    exported_prep = json.loads((tmp_path / "exported" / "preprocessing.json").read_text())
    assert records["zero-shot"].config["pretrained"]["preprocessing"] == exported_prep
    first_preds = np.load(ResultsLayout(tmp_path / "first").predictions(lora.run_id))
    zero_preds = np.load(ResultsLayout(tmp_path / "second").predictions(records["zero-shot"].run_id))
    assert set(first_preds.files) == set(zero_preds.files)
    for test_set in first_preds.files:
        np.testing.assert_allclose(zero_preds[test_set], first_preds[test_set], rtol=0, atol=1e-5)
    # On the other sample: the exported program (the run's model with its preprocessing inside) on raw cutouts.
    program = torch.export.load(tmp_path / "exported" / "model.pt2").module()
    (zero_other,) = [r for r in read_records(tmp_path / "second") if r.dataset == "other" and r.label == "zero-shot"]
    other_preds = np.load(ResultsLayout(tmp_path / "second").predictions(zero_other.run_id))
    pair = load_pair("toy", **other["options"])
    for test_set, galaxies in (("spec", pair.spec["test"]), ("photo", pair.photo["test"])):
        with torch.no_grad():
            expected = program(torch.from_numpy(galaxies.images.read(np.arange(len(galaxies))).astype(np.float32)))
        np.testing.assert_allclose(other_preds[test_set], expected.numpy(), rtol=0, atol=1e-5)

    assert {action for action, _ in dry_run(load_suite(suite_file), tmp_path / "second")} == {"skip"}
    weights = tmp_path / "exported" / "merged.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one byte of the last tensor
    weights.write_bytes(bytes(data))
    assert {action for action, _ in dry_run(load_suite(suite_file), tmp_path / "second")} == {"run"}


# --- own architectures --------------------------------------------------------------------------------------------

class _FlatNet(nn.Module):
    def __init__(self, in_chans: int = 5) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(in_chans, 4, 3), nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


class _WideRegressor(Regressor):
    def forward(self, x):
        return self.net(x)  # (B, 1): the shape that broadcasts silently against (B,) labels


def test_factories_are_checked_when_a_model_is_built():
    register_backbone("test-plain")(lambda in_chans, img_size: _FlatNet(in_chans))
    register_backbone("test-wrapped", head_names=["head"])(lambda in_chans, img_size: _FlatNet(in_chans))
    register_backbone("test-wide")(lambda in_chans, img_size: _WideRegressor(_FlatNet(in_chans), ["head"], "test-wide"))
    try:
        with pytest.raises(TypeError, match="returned a _FlatNet, not a zpeft Regressor.*head_names"):
            backbones.create("test-plain", img_size=16)
        with pytest.raises(ValueError, match=r"outputs of shape \(2, 1\) for a batch of 2"):
            backbones.create("test-wide", img_size=16)
        model = backbones.create("test-wrapped", img_size=16)
        assert model.head_names == ["net.head"] and model(torch.randn(3, 5, 16, 16)).shape == (3,)
    finally:
        for name in ("test-plain", "test-wrapped", "test-wide"):
            BACKBONES.remove(name)


MODULE = '''
from torch import nn
from zpeft.backbones import register_backbone


class Net(nn.Module):
    def __init__(self, in_chans):
        super().__init__()
        self.conv, self.head = nn.Conv2d(in_chans, 4, 3), nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


@register_backbone("{name}"{head})
def factory(in_chans=5, img_size=64):
    return Net(in_chans)
'''


def test_a_factory_giving_b_by_1_outputs_fails_before_training_in_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "flat_backbone_test.py").write_text(MODULE.format(name="flat-test", head=""))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv(backbones.registry.IMPORT_ENV, "")
    suite = write_suite(tmp_path / "suite.toml", "flat-test", strategies=("zero-shot", "full"))
    capsys.readouterr()
    try:
        code = main(["run", str(suite), "--import", "flat_backbone_test", "--out", "out", "--no-progress"])
    finally:
        BACKBONES.remove("flat-test")
        sys.modules.pop("flat_backbone_test", None)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'flat-test'" in err and "not a zpeft Regressor" in err, err
    assert not (tmp_path / "out").exists()
    assert main(["run", str(suite), "--import", "no_such_module_here"]) == 2
    assert "module 'no_such_module_here' does not import" in capsys.readouterr().err


def _zpeft(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "zpeft"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "zpeft"]
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), **env}
    return subprocess.run(command + args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_an_own_backbone_runs_from_an_installed_entry_point_and_from_import_in_worker_processes(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "ep_backbone_test.py").write_text(MODULE.format(name="ep-test", head=', head_names=["head"]'))
    info = site / "ep_backbone_test-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-backbone-test\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[zpeft.backbones]\nep-test = ep_backbone_test\n")
    suite = write_suite(tmp_path / "suite.toml", "ep-test", strategies=("zero-shot", "head-only"))
    done = _zpeft(["run", "suite.toml", "--out", "ep", "--no-progress"], tmp_path, PYTHONPATH=str(site))
    assert done.returncode == 0, done.stderr
    assert {(r.backbone, r.status) for r in read_records(tmp_path / "ep")} == {("ep-test", "ok")}

    # --import: the module sits in the current directory; spawned workers import it too.
    (tmp_path / "ep_backbone_test.py").write_text((site / "ep_backbone_test.py").read_text())
    done = _zpeft(["run", str(suite), "--import", "ep_backbone_test", "--out", "imported", "--no-progress",
                   "--executor", "process", "--workers", "2"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert {(r.backbone, r.status) for r in read_records(tmp_path / "imported")} == {("ep-test", "ok")}


# --- data friction ------------------------------------------------------------------------------------------------

def test_dataset_paths_are_relative_to_the_suite_file_and_a_pair_is_named_by_its_own_name(tmp_path, monkeypatch):
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "pair.toml").write_text(textwrap.dedent("""\
        name = "my survey"
        [photo]
        label_key = "z"
        train = "p_train.hdf5"
        val = "p_val.hdf5"
        test = "p_test.hdf5"
        [spec]
        label_key = "z"
        train = "s_train.hdf5"
        val = "s_val.hdf5"
        test = "s_test.hdf5"
        """))
    (folder / "suite.toml").write_text('datasets = ["pair.toml"]\nbackbones = ["cnn-small"]\nstrategies = ["zero-shot"]\n')
    monkeypatch.chdir(tmp_path)
    suite = load_suite("suites/suite.toml")
    assert suite.datasets[0].name == str(Path("suites") / "pair.toml")
    assert suite.datasets[0].label == "my-survey"


def test_pipeline_takes_weights_and_preprocessing_on_the_command_line(tmp_path, capsys):
    save_file(cnn_state(), tmp_path / "w.safetensors")
    (tmp_path / "prep.json").write_text(json.dumps({"sky_sigma": [0.05] * 5}))
    out = tmp_path / "out"
    assert main(["pipeline", "--dataset", "toy", "--strategies", "zero-shot", "--weights", str(tmp_path / "w.safetensors"),
                 "--preprocessing", str(tmp_path / "prep.json"), "--out", str(out)]) == 0
    (record,) = read_records(out)
    assert record.status == "ok" and record.config["pretrained"]["preprocessing"]["sky_sigma"] == [0.05] * 5
    assert main(["pipeline", "--dataset", "toy", "--preprocessing", str(tmp_path / "prep.json"),
                 "--out", str(tmp_path / "none")]) == 2
    assert "'preprocessing' goes with 'weights'" in capsys.readouterr().err
