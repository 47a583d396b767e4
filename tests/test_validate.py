"""Bad survey files are reported by file, key and row, by the validator and the readers alike."""

from __future__ import annotations

import argparse
import json

import h5py
import numpy as np
import pytest

from zpeft.cli.data import add_parser
from zpeft.data import checks as validate_module
from zpeft.data.hdf5 import read_hdf5
from zpeft.data.validate import Problem, validate_file, validate_path

N, SIZE = 6, 8


def write_h5(path, *, n=N, bands=5, label_key="specz_redshift", drop=(), ids=None, z=None, pixels=None):
    """A small GalaxiesML-layout file; `drop` leaves keys out, the rest overrides columns."""
    rng = np.random.default_rng(0)
    columns = {
        "image": rng.normal(size=(n, bands, SIZE, SIZE)).astype(np.float16) if pixels is None else pixels,
        label_key: rng.uniform(0.1, 2.0, n).astype(np.float32) if z is None else np.asarray(z, np.float32),
        "object_id": np.arange(100, 100 + n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64),
        "i_cmodel_mag": rng.uniform(18, 24, n).astype(np.float32),
    }
    with h5py.File(path, "w") as f:
        for key, value in columns.items():
            if key not in drop:
                f[key] = value
    return path


def bad_pixels(value, row):
    pixels = np.zeros((N, 5, SIZE, SIZE), np.float16)
    pixels[row, 2, 3, 4] = value
    return pixels


BAD_FILES = {
    # case: (writer options, key named, first row named or None, words in the message)
    "missing image": (dict(drop=("image",)), "image", None, "missing"),
    "missing label": (dict(drop=("specz_redshift",)), "specz_redshift", None, "missing"),
    "four bands": (dict(bands=4), "image", None, "has 4 bands"),
    "nan pixel": (dict(pixels=bad_pixels(np.nan, 3)), "image", 3, "NaN or inf pixels"),
    "inf pixel": (dict(pixels=bad_pixels(np.inf, 5)), "image", 5, "NaN or inf pixels"),
    "label 7": (dict(z=[0.5, 0.5, 7.0, 0.5, 0.5, 0.5]), "specz_redshift", 2, "outside [0, 6]"),
    "label -99": (dict(z=[0.5, -99, 0.5, 0.5, 0.5, 0.5]), "specz_redshift", 1, "outside [0, 6]"),
    "empty": (dict(n=0), "image", None, "no rows"),
    "length mismatch": (dict(z=np.full(N - 1, 0.5)), "specz_redshift", None, "has 5 rows but 'image' has 6"),
    "duplicate ids": (dict(ids=[1, 2, 3, 4, 2, 6]), "object_id", 4, "duplicate object ids"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_validator_names_file_key_and_row(tmp_path, case):
    options, key, row, words = BAD_FILES[case]
    path = write_h5(tmp_path / "bad.hdf5", **options)
    problems = validate_file(path, "specz_redshift")
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.file, problem.key) == (str(path), key)
    assert problem.rows[:1] == (() if row is None else (row,))
    assert words in str(problem)


@pytest.mark.parametrize("case", BAD_FILES)
def test_reader_raises_the_same_problem(tmp_path, case):
    options, key, row, words = BAD_FILES[case]
    path = write_h5(tmp_path / "bad.hdf5", **options)
    expected = str(validate_file(path, "specz_redshift")[0])
    with pytest.raises(ValueError) as err:
        read_hdf5(path, "specz_redshift")
    assert expected in str(err.value)
    assert f"file {path}, key {key!r}" in str(err.value)


def test_problem_message_reads_file_key_rows_and_fix():
    problem = Problem("x.hdf5", "image", "NaN or inf pixels; drop or repair those cutouts", (17, 20), 9)
    assert str(problem) == "file x.hdf5, key 'image', rows 17, 20 (9 rows in all): NaN or inf pixels; drop or repair those cutouts"
    assert str(Problem("x.hdf5", "image", "NaN", (17,), 1)) == "file x.hdf5, key 'image', row 17: NaN"


def test_nan_rows_found_across_read_chunks(tmp_path, monkeypatch):
    # One row per chunk: the row numbers must still be the file's, not the chunk's.
    monkeypatch.setattr(validate_module, "_CHUNK_BYTES", 1)
    pixels = np.zeros((N, 5, SIZE, SIZE), np.float32)
    pixels[[1, 5], 0, 0, 0] = np.nan
    problems = validate_file(write_h5(tmp_path / "f.hdf5", pixels=pixels), "specz_redshift")
    assert [(p.rows, p.n_rows) for p in problems] == [((1, 5), 2)]


def test_good_file_has_no_problems_and_label_key_is_guessed(tmp_path):
    assert validate_file(write_h5(tmp_path / "spec.hdf5")) == []
    assert validate_file(write_h5(tmp_path / "photo.hdf5", label_key="lp_zPDF_CLASSIC")) == []


def test_missing_file_and_unknown_type_are_problems(tmp_path):
    assert "does not exist" in str(validate_file(tmp_path / "nope.hdf5")[0])
    (tmp_path / "cat.txt").write_text("hello")
    assert "unknown file type" in str(validate_file(tmp_path / "cat.txt")[0])


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="zpeft")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_validate_cli_exit_codes(tmp_path, capsys):
    good = write_h5(tmp_path / "good.hdf5")
    assert run_cli(["data", "validate", str(good)]) == 0
    assert capsys.readouterr().out == "ok\n"

    bad = write_h5(tmp_path / "bad.hdf5", pixels=bad_pixels(np.nan, 3), z=[0.5, 0.5, 7.0, 0.5, 0.5, 0.5])
    assert run_cli(["data", "validate", str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"file {bad}, key 'specz_redshift', row 2:")
    assert lines[1].startswith(f"file {bad}, key 'image', row 3:")


def test_validate_path_checks_every_file_of_a_pair_and_split_overlap(tmp_path):
    files = {}
    for kind, key, first in (("photo", "lp_zPDF_CLASSIC", 0), ("spec", "specz_redshift", 1000)):
        files[kind] = {}
        for i, split in enumerate(("train", "val", "test")):
            name = f"{kind}_{split}.hdf5"
            ids = np.arange(first + 10 * i, first + 10 * i + N)
            write_h5(tmp_path / name, label_key=key, ids=ids)
            files[kind][split] = name
    manifest = {"name": "sim-test", "source": "sim", "bands": list("grizy"),
                "label_keys": {"photo": "lp_zPDF_CLASSIC", "spec": "specz_redshift"}, "files": files}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert validate_path(tmp_path) == []

    write_h5(tmp_path / "spec_test.hdf5", label_key="specz_redshift", ids=[1000, 1001, 1050, 1051, 1052, 1053],
             pixels=bad_pixels(np.inf, 4))
    problems = [str(p) for p in validate_path(tmp_path)]
    assert any(p.startswith(f"file {tmp_path / 'spec_test.hdf5'}, key 'image', row 4:") for p in problems)
    assert any("spec-z test split shares object ids with the train split" in p and "rows 0, 1" in p for p in problems)
