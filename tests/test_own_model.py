"""README "Bring your own model and data", run as written: own HDF5 pair, own network from a module, own weights.

The test makes what a user brings (the HDF5 files and the weights file), writes the README's
files from its code blocks and runs its commands, as they are, in a fresh folder.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from zpeft import backbones
from zpeft.backbones import BACKBONES
from zpeft.checksum import sha256_file
from zpeft.cli import main
from zpeft.data.preprocess import Preprocessor
from zpeft.data.synthetic import toy_pair
from zpeft.run.layout import ResultsLayout
from zpeft.run.outputs import read_catalogue
from zpeft.run.records import read_records

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Bring your own model and data"
BANDS = "grizy"


def readme_example() -> tuple[dict[str, str], list[str]]:
    """The section's files ({path: text}, blocks whose first line is `# <path>`) and its shell commands."""
    text = README.read_text()
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    files, commands = {}, []
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S):
        first = body.splitlines()[0]
        if lang in ("python", "toml") and re.fullmatch(r"# [\w/.-]+\.(py|toml|json)", first):
            files[first[2:]] = body
        elif lang == "bash":
            commands += [line for line in body.splitlines() if line.strip() and not line.startswith("#")]
    return files, commands


def write_hdf5_pair(folder: Path, label_keys: dict[str, str]) -> None:
    """A small pair of 16 x 16 cutouts in the GalaxiesML layout: one file per set and split."""
    pair = toy_pair(n_photo=240, n_spec=160, size=16, seed=3)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, sets in (("photo", pair.photo), ("spec", pair.spec)):
        for split, galaxies in sets.items():
            with h5py.File(folder / f"{kind}_{split}.hdf5", "w") as f:
                f["image"] = galaxies.images.read(np.arange(len(galaxies))).astype(np.float32)
                f[label_keys[kind]] = galaxies.z
                f["object_id"] = galaxies.ids
                for band in BANDS:
                    f[f"{band}_cmodel_mag"] = galaxies.mags[band]


def zpeft_command(line: str) -> list[str]:
    """A README command line with `zpeft` as the installed script of this Python (or `python -m zpeft`)."""
    args = shlex.split(line)
    assert args[0] == "zpeft", line
    script = Path(sys.executable).parent / "zpeft"
    return ([str(script)] if script.is_file() else [sys.executable, "-m", "zpeft"]) + args[1:]


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_readme_own_model_and_data_example_runs_as_written(tmp_path, monkeypatch, capsys):
    files, commands = readme_example()
    assert {"mydata/pair.toml", "mymodel.py", "my-suite.toml"} <= set(files)
    assert [c.split()[:2] for c in commands] == [["zpeft", "run"], ["zpeft", "report"], ["zpeft", "export"]]
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    import tomllib

    pair = tomllib.loads(files["mydata/pair.toml"])
    write_hdf5_pair(tmp_path / "mydata", {kind: pair[kind]["label_key"] for kind in ("photo", "spec")})
    suite = tomllib.loads(files["my-suite.toml"])
    entry = suite["backbones"][0]

    # The user's pretrained network: the bare network's state dict (keys without zpeft's `net.`).
    load_module(tmp_path / "mymodel.py", "mymodel")
    try:
        torch.manual_seed(0)
        model = backbones.create(entry["name"], in_chans=5, img_size=16)
        with torch.no_grad():
            model.net.head.bias.fill_(0.7)  # plausible redshifts, so the run's sanity check has nothing to say
        weights = tmp_path / entry["weights"]
        weights.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, weights)
    finally:
        BACKBONES.remove(entry["name"])
        sys.modules.pop("mymodel", None)

    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(tmp_path)}
    for line in commands:
        done = subprocess.run(zpeft_command(line), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"

    results = tmp_path / "results" / suite["name"]
    records = {r.label: r for r in read_records(results)}
    assert set(records) == {"zero-shot", "head-only", "lora-r2", "full"}
    assert all(r.status == "ok" and r.dataset == "mysurvey" and r.run_id.startswith("mysurvey__my-cnn__")
               for r in records.values())
    # No base training: the base model is the weights file, identified by its SHA-256 in every run's config.
    sha = sha256_file(weights)
    assert all(r.base_train_seconds == 0.0 and r.config["pretrained"]["weights_sha256"] == sha
               for r in records.values())
    assert all(r.config["pretrained"]["preprocessing"]["sky_sigma"] == entry["preprocessing"]["sky_sigma"]
               for r in records.values())
    bases = list(ResultsLayout(results).bases.glob("*.json"))
    assert len(bases) == 1 and json.loads(bases[0].read_text())["result"]["epochs_run"] == 0
    # Zero-shot predicts with the user's model as it is, with the user's preprocessing.
    prep = Preprocessor(tuple(entry["preprocessing"]["sky_sigma"]), (0.0,) * 5, (1.0,) * 5)
    model.eval()
    for test_set in ("spec", "photo"):
        catalogue = read_catalogue(ResultsLayout(results).catalogue(records["zero-shot"].run_id, test_set))
        with h5py.File(tmp_path / "mydata" / f"{test_set}_test.hdf5") as f:
            raw, ids = torch.from_numpy(f["image"][:]), f["object_id"][:]
        with torch.no_grad():
            own = model(prep(raw)).numpy()
        assert np.array_equal(np.asarray(catalogue["object_id"]), ids)
        np.testing.assert_allclose(np.asarray(catalogue["z_pred"]), own, rtol=0, atol=1e-6)
    assert (tmp_path / "reports" / "mine" / "report.md").is_file()
    exported = tmp_path / "exported" / "lora"
    assert {"model.pt2", "merged.safetensors", "preprocessing.json", "adapter"} <= {p.name for p in exported.iterdir()}

    # Exporting a run of a backbone this process does not know (no --import) is refused in one line.
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["export", f"results/mine/{records['full'].run_id}", "-o", "exported/full"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "my-cnn" in err and "--import" in err
    assert not (tmp_path / "exported" / "full").exists()
