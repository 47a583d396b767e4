import numpy as np
import pytest
import torch

import backbones
import strategies
from bench.cli import main
from bench.compare_strategies import compare_strategies, parse_strategy_list
from bench.data import DatasetPair, GalaxySet
from bench.data.synthetic import toy_pair
from bench.pipeline import adapt, prepare_data, score, state_of, train_base
from bench.train import TrainSettings

CPU = torch.device("cpu")
QUICK = TrainSettings(epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def data():
    return prepare_data(toy_pair(n_photo=300, n_spec=150, size=16, seed=1))


def test_pipeline_compares_the_five_strategies_with_their_costs(data):
    table = compare_strategies(data.pair, "cnn-small", parse_strategy_list("zero-shot,head-only,lora:rank=2,full,combined"),
                               base=QUICK, finetune=QUICK, device=CPU, progress=False)
    rows = table.set_index("strategy")
    total = backbones.count_parameters(backbones.create("cnn-small", img_size=16))
    assert list(rows.index) == ["zero-shot", "head-only", "lora-r2", "full", "combined"]
    assert rows.loc["zero-shot", "trainable_params"] == 0 and rows.loc["zero-shot", "train_seconds"] == 0
    assert 0 < rows.loc["head-only", "trainable_params"] < total
    assert 0 < rows.loc["lora-r2", "trainable_params"] < total
    assert rows.loc["full", "trainable_params"] == rows.loc["combined", "trainable_params"] == total
    assert (rows.loc[rows.index != "zero-shot", "train_seconds"] > 0).all()
    assert np.isfinite(rows[["bias", "sigma_nmad", "outlier_015"]].to_numpy()).all()


def test_training_is_reproducible_from_the_seed(data):
    preds = []
    for _ in range(2):
        model, _ = train_base("cnn-small", data, QUICK, device=CPU, seed=3, progress=False)
        preds.append(score(model, data, device=CPU, n_boot=10)["spec"]["label"]["all"]["sigma_nmad"])
    assert preds[0] == preds[1]


def test_strategies_all_start_from_the_same_base_weights(data):
    base, _ = train_base("cnn-small", data, QUICK, device=CPU, seed=0, progress=False)
    state = state_of(base)
    zero_shot, result = adapt(strategies.create("zero-shot"), "cnn-small", state, data, QUICK, QUICK, device=CPU, seed=0)
    assert result is None
    for key, value in zero_shot.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_scores_cover_every_test_set_against_label_and_true_z(data):
    model, _ = train_base("cnn-small", data, QUICK, device=CPU, seed=0, progress=False)
    scores = score(model, data, device=CPU, n_boot=20)
    assert set(scores) == {"spec", "photo", "combined"}
    assert {"label", "true"} <= set(scores["spec"])
    assert scores["combined"]["label"]["all"]["n"] == len(data.sets["combined", "test"])


def test_combined_set_keeps_one_row_per_galaxy_with_the_spec_label():
    def galaxies(ids, z):
        n = len(ids)
        return GalaxySet(np.zeros((n, 5, 4, 4), np.float32), np.asarray(z, np.float32), np.asarray(ids, np.int64))

    photo = {s: galaxies([1, 2, 3], [0.5, 0.6, 0.7]) for s in ("train", "val", "test")}
    spec = {s: galaxies([3, 4], [0.9, 1.0]) for s in ("train", "val", "test")}
    combined = DatasetPair("t", photo, spec).combined("train")
    assert sorted(combined.ids.tolist()) == [1, 2, 3, 4]
    assert combined.z[combined.ids == 3].tolist() == pytest.approx([0.9])


def test_cli_lists_the_registries(capsys):
    assert main(["list", "strategies"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("zero-shot", "head-only", "lora", "full", "combined"))
    assert main(["list", "backbones"]) == 0
    assert "resnet18-mlp" in capsys.readouterr().out


def test_cli_pipeline_prints_one_row_per_strategy(capsys):
    code = main(["pipeline", "--dataset", "toy", "--strategies", "zero-shot,head-only", "--base-epochs", "1",
                 "--epochs", "1", "--batch-size", "64", "--device", "cpu"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["strategy", "trainable_params"]
    assert [line.split()[0] for line in lines[1:]] == ["zero-shot", "head-only"]
