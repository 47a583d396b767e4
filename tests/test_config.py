"""Suite files: validation with errors that name the problem and the fix, and the shipped suites."""

from __future__ import annotations

import pytest

from zpeft.run.suite import SuiteError, find_suite, list_suites, load_suite, parse_suite
from zpeft.training.settings import TrainSettings


def suite(**changes) -> dict:
    """A minimal valid suite (as parsed TOML) with some keys changed."""
    data = {"datasets": ["toy"], "backbones": ["cnn-small"], "strategies": ["zero-shot", "head-only"]}
    data.update(changes)
    return data


def test_a_minimal_suite_gets_the_documented_defaults():
    s = parse_suite(suite(), default_name="mine")
    assert s.name == "mine" and s.seeds == (0,) and s.data_fractions == (1.0,) and s.crop is None
    assert s.device == "auto" and s.n_boot == 200
    assert s.base == TrainSettings() and s.finetune == TrainSettings()
    assert [d.label for d in s.datasets] == ["toy"]


def test_unknown_strategy_names_the_known_ones():
    with pytest.raises(SuiteError, match=r"strategies\[1\]: unknown strategy 'lorra'; known: .*head-only.*lora"):
        parse_suite(suite(strategies=["zero-shot", {"name": "lorra"}]))


def test_bad_strategy_parameter_names_the_entry_and_the_accepted_parameters():
    with pytest.raises(SuiteError, match=r"strategies\[0\] \(lora\): .*no parameter\(s\) ranks; accepted: alpha, bn, dropout, fused, rank$"):
        parse_suite(suite(strategies=[{"name": "lora", "grid": {"ranks": [2]}}]))
    with pytest.raises(SuiteError, match=r"strategies\[0\] \(lora\): lora rank must be an integer >= 1, got 0"):
        parse_suite(suite(strategies=[{"name": "lora", "grid": {"rank": [4, 0]}}]))


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1, "half", True])
def test_bad_fraction_says_what_is_expected(fraction):
    with pytest.raises(SuiteError, match=r"data_fractions must be numbers with 0 < f <= 1"):
        parse_suite(suite(data_fractions=[0.5, fraction]))


def test_unknown_keys_name_the_allowed_keys():
    with pytest.raises(SuiteError, match=r"unknown key\(s\) 'epochs'; allowed: name, description, datasets"):
        parse_suite(suite(epochs=3))
    with pytest.raises(SuiteError, match=r"\[training.finetune\]: unknown key\(s\) 'epoch'; allowed: epochs, lr"):
        parse_suite(suite(training={"finetune": {"epoch": 3}}))
    with pytest.raises(SuiteError, match=r"strategies\[0\]: unknown key\(s\) 'params'; allowed: name, grid, lr, lr_grid, tag, data_fractions"):
        parse_suite(suite(strategies=[{"name": "lora", "params": {"rank": 2}}]))


def test_unknown_backbone_and_dataset_name_the_known_ones():
    with pytest.raises(SuiteError, match=r"unknown backbone 'cnn-huge'; known: cnn-small, resnet18-mlp, or timm/"):
        parse_suite(suite(backbones=["cnn-huge"]))
    with pytest.raises(SuiteError, match=r"datasets\[0\]: unknown dataset 'toys'; known: .*toy"):
        parse_suite(suite(datasets=["toys"]))


def test_training_values_are_type_checked_and_validated():
    with pytest.raises(SuiteError, match=r"\[training.base\] epochs: expected an integer, got 'ten'"):
        parse_suite(suite(training={"base": {"epochs": "ten"}}))
    with pytest.raises(SuiteError, match=r"\[training.base\]: epochs must be an integer >= 1, got 0"):
        parse_suite(suite(training={"base": {"epochs": 0}}))
    s = parse_suite(suite(training={"finetune": {"lr": 1, "epochs": 3}}))
    assert s.finetune.lr == 1.0 and isinstance(s.finetune.lr, float) and s.finetune.epochs == 3


def test_crop_seeds_and_device_are_checked():
    assert parse_suite(suite(crop=32)).crop == 32
    with pytest.raises(SuiteError, match=r'crop must be a size in pixels .* or "none"'):
        parse_suite(suite(crop=0))
    with pytest.raises(SuiteError, match=r"seeds repeats 1"):
        parse_suite(suite(seeds=[1, 1]))
    with pytest.raises(SuiteError, match=r"device 'gpu' is not a device"):
        parse_suite(suite(device="gpu"))


def test_grid_axes_the_label_does_not_show_are_appended_to_it():
    s = parse_suite(suite(strategies=[{"name": "lora", "grid": {"rank": [2, 4], "alpha": [8, 16]}}]))
    labels = [label for _, label in s.strategies[0].expand()]
    assert labels == ["lora-r2-alpha8", "lora-r2-alpha16", "lora-r4-alpha8", "lora-r4-alpha16"]


def test_two_entries_with_the_same_label_must_be_told_apart_by_a_tag():
    twice = [{"name": "head-only"}, {"name": "head-only", "lr": 1e-8}]
    with pytest.raises(SuiteError, match=r"strategies\[0\] and strategies\[1\] both give runs labelled 'head-only'"):
        parse_suite(suite(strategies=twice))
    s = parse_suite(suite(strategies=[twice[0], {**twice[1], "tag": "lr1e-8"}]))
    assert [label for spec in s.strategies for _, label in spec.expand()] == ["head-only", "head-only-lr1e-8"]


def test_the_same_dataset_twice_needs_labels():
    mismatch = {"name": "toy", "options": {"seed": 1}}
    with pytest.raises(SuiteError, match=r"datasets repeats toy; .*set a 'label'"):
        parse_suite(suite(datasets=["toy", mismatch]))
    s = parse_suite(suite(datasets=["toy", {**mismatch, "label": "toy-1"}]))
    assert [(d.label, d.options) for d in s.datasets] == [("toy", {}), ("toy-1", {"seed": 1})]


def test_every_shipped_suite_is_valid():
    names = list_suites()
    assert {"tiny", "quick", "paper", "fractions", "mismatch", "timm", "beyond"} <= set(names)
    for name in names:
        assert load_suite(name).name == name


def test_suites_are_found_by_name_or_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('datasets = ["toy"]\nbackbones = ["cnn-small"]\nstrategies = ["zero-shot"]\n')
    assert load_suite(path).name == "mine" and load_suite(str(path)).source == str(path)
    assert find_suite("tiny").name == "tiny.toml"
    with pytest.raises(SuiteError, match=r"no suite 'nope': .*known: .*quick.*tiny"):
        find_suite("nope")
    path.write_text("datasets = [")
    with pytest.raises(SuiteError, match=r"mine.toml: not valid TOML"):
        load_suite(path)
