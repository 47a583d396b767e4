import peft
import pytest
import torch

from tests.test_backbones import TIMM_BACKBONES
from zpeft import backbones, strategies
from zpeft.training.batches import Inputs
from zpeft.training.loop import set_train_mode, train
from zpeft.training.settings import TrainSettings


def test_lora_rank4_on_resnet18_mlp_trains_the_reference_152280_parameters():
    model = strategies.create("lora", rank=4, alpha=16).prepare(backbones.create("resnet18-mlp"))
    assert backbones.count_parameters(model, trainable_only=True) == 152_280
    assert backbones.count_parameters(model) == 11_577_025 + 152_280


def test_lora_alpha_defaults_to_four_times_rank():
    assert strategies.create("lora", rank=8).peft_config(["x"]).lora_alpha == 32


def test_head_only_trains_exactly_the_mlp():
    model = strategies.create("head-only").prepare(backbones.create("resnet18-mlp"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert backbones.count_parameters(model, trainable_only=True) == 394_241
    assert all(n.startswith("net.mlp.") for n in trainable)


def test_lora_leaves_the_output_unchanged_when_applied(images):
    model = backbones.create("resnet18-mlp").eval()
    before = model(images)
    adapted = strategies.create("lora", rank=4).prepare(model).eval()
    torch.testing.assert_close(adapted(images), before)


def test_lora_merge_and_unload_reproduces_the_adapted_model(images):
    adapted = strategies.create("lora", rank=4).prepare(backbones.create("resnet18-mlp")).eval()
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)  # a trained adapter: the delta is no longer zero
    expected = adapted(images)
    with adapted.disable_adapter():
        assert not torch.allclose(adapted(images), expected), "the perturbed adapter should change the output"
    merged = adapted.merge_and_unload().eval()
    assert not any("lora" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(merged(images), expected, rtol=1e-4, atol=1e-5)


def test_head_only_changes_no_backbone_weight_and_no_batchnorm_buffer():
    model = strategies.create("head-only").prepare(backbones.create("cnn-small", img_size=16))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = Inputs.fitted(torch.randn(64, 5, 16, 16), torch.rand(64))
    val = Inputs(data.images[:16], data.z[:16], data.preprocess)
    train(model, data, val, TrainSettings(epochs=2, batch_size=16, lr=1e-2), device=torch.device("cpu"),
          seed=0, bn_frozen=True, progress=False)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "the head should have trained"
    assert all(k.startswith("net.1.") for k in changed), f"non-head tensors changed: {sorted(changed)}"


def test_frozen_bn_policy_keeps_batchnorm_in_eval_mode():
    model = backbones.create("cnn-small")
    set_train_mode(model, bn_frozen=True)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.net[1][2].training  # dropout in the head still trains


def test_zero_shot_trains_nothing():
    model = strategies.create("zero-shot").prepare(backbones.create("cnn-small"))
    assert backbones.count_parameters(model, trainable_only=True) == 0
    assert strategies.strategy_class("zero-shot").trains_on == "none"


def test_combined_starts_from_scratch_on_the_union():
    cls = strategies.strategy_class("combined")
    assert (cls.starts_from, cls.trains_on) == ("scratch", "combined")
    with pytest.raises(ValueError, match="scratch"):
        strategies.create("combined", bn="frozen")


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_lora_refuses_bad_ranks(bad):
    with pytest.raises(ValueError, match="rank"):
        strategies.create("lora", rank=bad)


def test_bn_policy_is_validated_and_recorded():
    with pytest.raises(ValueError, match="bn must be one of"):
        strategies.create("head-only", bn="sometimes")
    assert strategies.create("lora", bn="train").params()["bn"] == "train"


def test_unknown_strategy_and_parameter_errors_name_what_is_known():
    with pytest.raises(KeyError, match="head-only"):
        strategies.create("magic")
    with pytest.raises(TypeError, match="rank"):
        strategies.create("lora", rnk=4)


def test_the_five_core_strategies_are_registered():
    assert {"zero-shot", "head-only", "lora", "full", "combined"} <= set(strategies.list_strategies())


@pytest.mark.parametrize("strategy", strategies.list_strategies())
@pytest.mark.parametrize("backbone", TIMM_BACKBONES)
def test_every_timm_backbone_trains_under_every_strategy(backbone, strategy):
    model = strategies.create(strategy).prepare(backbones.create(backbone, in_chans=5, img_size=64))
    set_train_mode(model, bn_frozen=strategies.create(strategy).bn == "frozen")
    out = model(torch.randn(2, 5, 64, 64))
    assert out.shape == (2,)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if strategy == "zero-shot":
        assert not trainable
        return
    out.square().mean().backward()
    assert trainable and all(p.grad is not None for p in trainable)
    if isinstance(model, peft.PeftModel):
        assert all(not p.requires_grad for n, p in model.named_parameters() if "base_layer" in n)
