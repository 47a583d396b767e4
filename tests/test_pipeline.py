import numpy as np
import pytest
import torch

from zpeft import backbones, strategies
from zpeft.cli import main
from zpeft.data import DatasetPair, GalaxySet
from zpeft.data.synthetic import toy_pair
from zpeft.run.cell import adapt, predict_tests, score_predictions, state_of, train_base
from zpeft.run.prepared import prepare_data
from zpeft.run.records import read_records
from zpeft.training.settings import TrainSettings

CPU = torch.device("cpu")
QUICK = TrainSettings(epochs=2, batch_size=32, lr=1e-3)


@pytest.fixture(scope="module")
def data():
    return prepare_data(toy_pair(n_photo=300, n_spec=150, size=16, seed=1))


def test_pipeline_compares_the_five_strategies_with_their_costs(tmp_path, capsys):
    code = main(["pipeline", "--dataset", "toy", "--strategies", "zero-shot,head-only,lora:rank=2,full,combined",
                 "--base-epochs", "2", "--epochs", "2", "--batch-size", "32", "--device", "cpu",
                 "--out", str(tmp_path)])
    assert code == 0
    records = {r.label: r for r in read_records(tmp_path)}
    total = backbones.count_parameters(backbones.create("cnn-small", img_size=16))
    assert sorted(records) == ["combined", "full", "head-only", "lora-r2", "zero-shot"]
    assert records["zero-shot"].trainable_params == 0 and records["zero-shot"].train_seconds == 0
    assert 0 < records["head-only"].trainable_params < total
    assert 0 < records["lora-r2"].trainable_params < total
    assert records["full"].trainable_params == records["combined"].trainable_params == total
    assert all(r.train_seconds > 0 for label, r in records.items() if label != "zero-shot")
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[-5:]] == ["zero-shot", "head-only", "lora-r2", "full",
                                                                  "combined"]


@pytest.mark.parametrize("argv, message", [
    (["--device", "gpu"], "device 'gpu' is not a device"),
    (["--dataset", "toys"], "unknown dataset 'toys'"),
    (["--backbone", "cnn-huge"], "unknown backbone 'cnn-huge'"),
    (["--strategies", "lora:ranks=2"], "no parameter(s) ranks; accepted: alpha, bn, dropout, fused, rank"),
    (["--strategies", "lora:rank"], "parameter 'rank' is not key=value"),
])
def test_pipeline_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["pipeline", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_training_is_reproducible_from_the_seed(data):
    preds = []
    for _ in range(2):
        model, _ = train_base("cnn-small", data, QUICK, device=CPU, seed=3, progress=False)
        preds.append(score_predictions(predict_tests(model, data, device=CPU), data, n_boot=10)["spec"]["label"]["all"]["sigma_nmad"])
    assert preds[0] == preds[1]


def test_strategies_all_start_from_the_same_base_weights(data):
    base, _ = train_base("cnn-small", data, QUICK, device=CPU, seed=0, progress=False)
    state = state_of(base)
    zero_shot, result = adapt(strategies.create("zero-shot"), "cnn-small", state, data, None, device=CPU, seed=0)
    assert result is None
    for key, value in zero_shot.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_scores_cover_every_test_set_against_label_and_true_z(data):
    model, _ = train_base("cnn-small", data, QUICK, device=CPU, seed=0, progress=False)
    scores = score_predictions(predict_tests(model, data, device=CPU), data, n_boot=20)
    assert set(scores) == {"spec", "photo", "combined"}
    assert {"label", "true"} <= set(scores["spec"])
    assert scores["combined"]["label"]["all"]["n"] == len(data.sets["combined", "test"])


def test_the_combined_test_predictions_are_those_of_the_same_photo_and_spec_test_galaxies(data):
    from dataclasses import replace

    from zpeft.run.cell import combined_rows
    from zpeft.training.loop import predict

    model, _ = train_base("cnn-small", data, QUICK, device=CPU, seed=0, progress=False)
    direct = predict(model, data.inputs("combined", "test"), CPU)
    assert combined_rows(data) is not None
    np.testing.assert_allclose(predict_tests(model, data, device=CPU)["combined"], direct, rtol=0, atol=1e-6)
    combined = data.sets["combined", "test"]
    reversed_rows = replace(data, sets={**data.sets, ("combined", "test"): combined.subset(np.arange(len(combined))[::-1])})
    assert combined_rows(reversed_rows) is None  # built otherwise: predicted as it is
    np.testing.assert_allclose(predict_tests(model, reversed_rows, device=CPU)["combined"], direct[::-1], rtol=0,
                               atol=1e-6)


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
    assert main(["list", "suites"]) == 0
    assert "quick      sim-quick, cnn-small" in capsys.readouterr().out
