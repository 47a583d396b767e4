"""The base-model study: one row per configuration, the choice by validation loss, no test split read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zpeft.data.rows import ArrayStore, ImageRows
from zpeft.data.types import GalaxySet
from zpeft.run.prepared import PreparedData
from zpeft.studies import base_model as study
from zpeft.training.settings import TrainSettings

TOY = {"n_photo": 160, "n_spec": 80, "size": 16}


class _UnreadableStore(ArrayStore):
    """Test-split pixels: reading them is what the study must never do."""

    reads: list = []

    def read(self, rows, window):
        _UnreadableStore.reads.append(len(np.atleast_1d(rows)) if not isinstance(rows, slice) else rows)
        raise AssertionError("the study read a test split")


def _without_test_pixels(monkeypatch) -> None:
    real = study.load_pair

    def load(name, **options):
        pair = real(name, **options)
        for sets in (pair.photo, pair.spec):
            test = sets["test"]
            sets["test"] = GalaxySet(ImageRows.whole(_UnreadableStore(np.asarray(test.images.read()))), test.z,
                                     test.ids, test.z_true, test.mags, test.name, test.z_template)
        return pair

    monkeypatch.setattr(study, "load_pair", load)


def test_one_row_per_configuration_chosen_by_validation_loss_and_no_test_split(monkeypatch, tmp_path):
    _without_test_pixels(monkeypatch)
    asked = []
    inputs = PreparedData.inputs
    monkeypatch.setattr(PreparedData, "inputs", lambda self, kind, split: asked.append(split) or inputs(self, kind,
                                                                                                           split))
    _UnreadableStore.reads.clear()
    reference = study.BaseConfig("reference", "reference", width=4, crop=None,
                                 settings=TrainSettings(epochs=1, batch_size=32, lr=2e-3, patience=1))
    configs = [reference, reference.with_level("width", 8)]
    result = study.run_study(configs, "toy", TOY, workers=1, device="cpu", threads=1)

    table = result.table
    assert list(table["config"]) == ["reference", "width 8"]  # two one-factor rows, no combination of one factor
    assert (table["error"] == "").all(), table["error"].tolist()
    assert table["photo_val_loss"].notna().all()
    assert result.chosen == table.loc[table["photo_val_loss"].idxmin(), "config"]
    assert table["chosen"].sum() == 1 and table.loc[table["chosen"], "config"].item() == result.chosen
    assert table.loc[1, "trainable_params"] > table.loc[0, "trainable_params"]  # the width reached the backbone
    assert set(asked) == {"train", "val"} and not _UnreadableStore.reads

    paths = study.write_study(result, tmp_path)
    csv = pd.read_csv(tmp_path / "study.csv")
    assert [p.name for p in paths] == ["study.csv", "study.md"] and len(csv) == 2
    assert set(study.CSV_COLUMNS) == set(csv.columns)
    md = (tmp_path / "study.md").read_text()
    assert f"Chosen: **{result.chosen}**" in md and "lowest photo-z validation loss" in md
    assert md.count("\n| ") == 1 + len(configs)  # header and one line per row


def _row(config: study.BaseConfig, loss: float) -> dict:
    return study.describe(config) | {"photo_val_loss": loss}


def test_all_best_factors_combines_each_factors_lowest_loss_only_when_two_differ():
    reference = study.BaseConfig("reference", "reference", width=16, crop=32,
                                 settings=TrainSettings(epochs=10, batch_size=128, lr=2e-3, patience=3))
    configs = study.one_factor_configs(reference)
    assert [c.name for c in configs] == ["reference", "width 24", "width 32", "crop 48", "epochs 20",
                                         "batch_size 64", "photo_fraction 0.5"]
    losses = {"reference": 0.30, "width 24": 0.28, "width 32": 0.29, "crop 48": 0.27, "epochs 20": 0.31,
              "batch_size 64": float("nan"), "photo_fraction 0.5": 0.35}
    table = pd.DataFrame([_row(c, losses[c.name]) for c in configs])
    best = study.best_combination(table, configs)
    assert (best.name, best.width, best.crop, best.settings.epochs, best.settings.batch_size,
            best.photo_fraction) == ("all best factors", 24, 48, 10, 128, 1.0)

    losses["crop 48"] = 0.40  # only the width beats the reference: that row is already in the table
    table = pd.DataFrame([_row(c, losses[c.name]) for c in configs])
    assert study.best_combination(table, configs) is None


def test_bad_dataset_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*toy"):
        study.check_dataset("nope")
    assert study.main(["--out", str(tmp_path), "--dataset", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "study.csv").exists()
