"""Datasets by name or path, and the summary table and figure `zpeft data inspect/plot` show."""

from __future__ import annotations

import argparse
import json
import sys
import types

import h5py
import numpy as np
import pytest

from zpeft.cli.data import add_parser
from zpeft.data.inspect import plot_examples, summarise
from zpeft.data.registry import list_datasets, load_pair, register_dataset
from zpeft.data.types import DatasetPair

SUMMARY_COLUMNS = ["set", "split", "count", "bands", "image_size", "z_min", "z_p05", "z_p25", "z_p50", "z_p75",
                   "z_p95", "z_max", "i_mag_median", "has_z_true", "z_true_median"]


def write_pair_dir(root, n=5, size=8):
    """A manifest directory in the simulated-survey layout with n galaxies per split."""
    rng = np.random.default_rng(1)
    files = {}
    for k, (kind, key) in enumerate((("photo", "lp_zPDF_CLASSIC"), ("spec", "specz_redshift"))):
        files[kind] = {}
        for i, split in enumerate(("train", "val", "test")):
            name = f"{kind}_{split}.hdf5"
            with h5py.File(root / name, "w") as f:
                f["image"] = rng.normal(size=(n, 5, size, size)).astype(np.float16)
                f[key] = np.linspace(0.1, 1.0 + k, n, dtype=np.float32)
                f["z_truth"] = np.linspace(0.2, 1.2 + k, n, dtype=np.float32)
                f["object_id"] = np.arange(n, dtype=np.int64) + 100 * (3 * k + i)
                f["i_cmodel_mag"] = np.full(n, 21.0 + k, np.float32)
            files[kind][split] = name
    (root / "manifest.json").write_text(json.dumps({
        "name": "sim-tiny", "source": "sim", "preset": "tiny", "bands": list("grizy"),
        "label_keys": {"photo": "lp_zPDF_CLASSIC", "spec": "specz_redshift"}, "files": files}))
    return root


def test_toy_is_built_in_and_takes_its_options():
    pair = load_pair("toy", n_photo=50, n_spec=40, size=8, seed=1)
    assert isinstance(pair, DatasetPair)
    assert sum(len(s) for s in pair.photo.values()) == 50
    assert pair.spec["train"].images.shape[1:] == (5, 8, 8)


def test_unknown_name_lists_the_known_datasets():
    with pytest.raises(KeyError, match="unknown dataset 'nope'; known: sim-paper, sim-quick, sim-tiny, toy"):
        load_pair("nope")


def test_wrong_option_names_the_allowed_ones():
    with pytest.raises(TypeError, match="dataset 'toy' takes options n_photo, n_spec, size, seed; got n_galaxies"):
        load_pair("toy", n_galaxies=3)


def test_simulated_presets_are_listed_with_wildcards():
    assert list_datasets("sim-*") == ["sim-paper", "sim-quick", "sim-tiny"]
    with pytest.raises(ValueError, match="registered twice"):
        register_dataset("toy")(lambda: None)


def test_sim_name_simulates_then_reads_the_cached_directory(tmp_path, monkeypatch):
    calls = []

    def simulate(preset, out_dir=None, seed=0, label_model="deep", progress=True):
        calls.append((preset, out_dir, seed, label_model))
        return write_pair_dir(tmp_path)

    monkeypatch.setitem(sys.modules, "zpeft.simsurvey", types.SimpleNamespace(simulate=simulate))
    pair = load_pair("sim-quick", seed=7, label_model="mismatch", progress=False, max_rows=3)
    assert calls == [("quick", None, 7, "mismatch")]
    assert pair.meta["preset"] == "tiny"  # what the directory says, not what was asked
    assert len(pair.photo["test"]) == 3


def test_a_path_loads_the_pair_it_holds(tmp_path):
    pair = load_pair(str(write_pair_dir(tmp_path)))
    assert pair.name == "sim-tiny" and len(pair.spec["val"]) == 5


def test_summary_of_a_pair_and_of_its_directory_agree(tmp_path):
    write_pair_dir(tmp_path)
    from_pair = summarise(load_pair(str(tmp_path)))
    from_path = summarise(tmp_path)  # columns only, pixels unread
    assert list(from_path.columns) == SUMMARY_COLUMNS
    assert from_pair.equals(from_path)
    spec_test = from_path[(from_path.set == "spec") & (from_path.split == "test")].iloc[0]
    assert (spec_test["count"], spec_test["bands"], spec_test["image_size"]) == (5, 5, "8x8")
    assert (spec_test.z_min, spec_test.z_p50, spec_test.z_max) == pytest.approx((0.1, 1.05, 2.0))
    assert spec_test.i_mag_median == 22.0 and spec_test.has_z_true


def test_summary_of_a_single_file_and_of_a_name(tmp_path):
    write_pair_dir(tmp_path)
    table = summarise(tmp_path / "photo_val.hdf5")
    assert table.set.tolist() == ["photo_val.hdf5"] and table["count"].tolist() == [5]
    assert len(summarise("toy")) == 6


def test_plot_writes_a_png(tmp_path):
    out = plot_examples(load_pair("toy", n_photo=40, n_spec=30, size=8), tmp_path / "fig" / "examples.png")
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="zpeft")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_inspect_and_plot_commands(tmp_path, capsys):
    write_pair_dir(tmp_path)
    assert run_cli(["data", "inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["set", "split", "count", "bands"]
    assert len(out.splitlines()) == 7
    png = tmp_path / "plot.png"
    assert run_cli(["data", "plot", str(tmp_path), "-o", str(png), "--max-rows", "4"]) == 0
    assert png.stat().st_size > 10_000


def test_simulate_command_passes_its_options(tmp_path, monkeypatch, capsys):
    import zpeft.simsurvey

    calls = []

    def simulate(preset, out_dir=None, seed=0, label_model="deep", progress=True, workers=None):
        calls.append((preset, out_dir, seed, label_model, workers))
        (tmp_path / "manifest.json").write_text(json.dumps({"counts": {"photo": {"train": 1}, "spec": {"train": 1}}}))
        return tmp_path

    monkeypatch.setattr(zpeft.simsurvey, "simulate", simulate)
    assert run_cli(["data", "simulate", "--preset", "tiny", "-o", str(tmp_path), "--seed", "2", "--workers", "3"]) == 0
    assert calls == [("tiny", str(tmp_path), 2, "deep", 3)]
    assert capsys.readouterr().out.splitlines()[0] == str(tmp_path)
