"""paper-tl (the reference paper's stem + head transfer at lr 1e-8) and last-k (the last k blocks + head)."""

from __future__ import annotations

import pytest
import torch

from zpeft import backbones, strategies
from zpeft.data.synthetic import toy_pair
from zpeft.run.prepared import prepare_data
from zpeft.training.loop import train
from zpeft.training.settings import TrainSettings


def numel(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def trainable(model: torch.nn.Module) -> int:
    return backbones.count_parameters(model, trainable_only=True)


def resnet():
    return backbones.create("resnet18-mlp", in_chans=5, img_size=64)


def cnn():
    return backbones.create("cnn-small", in_chans=5, img_size=16)


def test_paper_tl_on_resnet18_mlp_trains_conv1_bn1_and_the_mlp():
    model = resnet()
    r = model.net.resnet
    expected = numel(r.conv1, r.bn1, model.net.mlp)
    assert expected == 5 * 64 * 7 * 7 + 2 * 64 + 394_241
    strategies.create("paper-tl").prepare(model)
    assert trainable(model) == expected
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("net.resnet.conv1.", "net.resnet.bn1.", "net.mlp.")) for n in names)


def test_paper_tl_on_cnn_small_trains_the_first_conv_block_and_the_head():
    model = cnn()
    first = model.net[0][0]
    expected = numel(first[0], first[1], model.net[1])
    strategies.create("paper-tl").prepare(model)
    assert trainable(model) == expected


def test_paper_tl_keeps_the_papers_learning_rate_and_frozen_batchnorm():
    strategy = strategies.create("paper-tl")
    assert type(strategy).default_lr == 1e-8
    assert strategy.bn == "frozen"


@pytest.mark.parametrize(("k", "stages"), [(1, ["layer4"]), (2, ["layer3", "layer4"]),
                                           (4, ["layer1", "layer2", "layer3", "layer4"])])
def test_last_k_on_resnet18_mlp_counts_residual_stages(k, stages):
    model = resnet()
    expected = numel(*(getattr(model.net.resnet, s) for s in stages), model.net.mlp)
    strategies.create("last-k", k=k).prepare(model)
    assert trainable(model) == expected


@pytest.mark.parametrize("k", [1, 2, 3])
def test_last_k_on_cnn_small_counts_conv_blocks(k):
    model = cnn()
    expected = numel(*list(model.net[0])[4 - k:4], model.net[1])
    strategies.create("last-k", k=k).prepare(model)
    assert trainable(model) == expected


@pytest.mark.parametrize("make", [resnet, cnn])
def test_last_k_larger_than_the_block_count_is_refused(make):
    with pytest.raises(ValueError, match="has 4 blocks"):
        strategies.create("last-k", k=5).prepare(make())


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_last_k_refuses_bad_k(bad):
    with pytest.raises(ValueError, match="k must be an integer"):
        strategies.create("last-k", k=bad)


def test_last_k_label_names_k():
    assert strategies.create("last-k", k=2).label() == "last-k2"


@pytest.mark.parametrize(("strategy", "params"), [("paper-tl", {}), ("last-k", {"k": 1})])
def test_one_epoch_on_toy_data_trains_only_what_the_strategy_unfroze(strategy, params):
    data = prepare_data(toy_pair(n_photo=64, n_spec=128, size=16))
    s = strategies.create(strategy, **params)
    model = s.prepare(cnn())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # The test's lr is large enough to see the change; the paper's 1e-8 barely moves float32 weights.
    result = train(model, data.inputs("spec", "train"), data.inputs("spec", "val"),
                   TrainSettings(epochs=1, batch_size=16, lr=1e-2), device=torch.device("cpu"), seed=0,
                   bn_frozen=s.bn == "frozen", progress=False)
    assert len(result.history) == 1
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    unfrozen = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= unfrozen
