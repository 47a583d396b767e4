"""The merged-weight LoRA forward computes peft's function, gradients and save format exactly."""

from __future__ import annotations

import copy

import peft
import pytest
import torch
from safetensors.torch import load_file

from zpeft import backbones, strategies
from zpeft.backbones import count_parameters
from zpeft.strategies.fast_lora import count_fused, fuse_lora, merged_conv_weight, unfuse_lora


def _randomise_lora(model: torch.nn.Module, seed: int = 0) -> None:
    """Give B (zero at init) random values so that the adapters change the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))


def _adapted(backbone: str, img_size: int = 64, rank: int = 4, **params):
    torch.manual_seed(0)
    base = backbones.create(backbone, img_size=img_size).eval()
    model = strategies.create("lora", rank=rank, **params).prepare(copy.deepcopy(base))
    return base, model.eval()


def _outputs_and_grads(model, x):
    model.zero_grad(set_to_none=True)
    out = model(x)
    (out**2).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.detach(), grads


@pytest.mark.parametrize("backbone, img_size", [("resnet18-mlp", 64), ("timm/convnext_atto", 32),
                                                ("timm/efficientnet_b0", 32)])
def test_fused_forward_and_gradients_equal_peft(backbone, img_size):
    _, model = _adapted(backbone, img_size)
    _randomise_lora(model)
    x = torch.randn(4, 5, img_size, img_size, generator=torch.Generator().manual_seed(1))
    fused_out, fused_grads = _outputs_and_grads(model, x)
    n_fused = unfuse_lora(model)
    peft_out, peft_grads = _outputs_and_grads(model, x)
    n_lora = sum(isinstance(m, peft.tuners.lora.LoraLayer) for m in model.modules())
    assert n_fused == n_lora > 0  # every adapted layer took the fast path (depthwise convs are not targeted)
    torch.testing.assert_close(fused_out, peft_out, rtol=1e-4, atol=1e-5)
    assert fused_grads.keys() == peft_grads.keys() and all("lora_" in n for n in fused_grads)
    for name in fused_grads:
        torch.testing.assert_close(fused_grads[name], peft_grads[name], rtol=1e-3, atol=1e-6, msg=name)


def test_resnet18_lora_keeps_reference_trainable_count():
    _, model = _adapted("resnet18-mlp")
    assert count_fused(model) > 0
    assert count_parameters(model, trainable_only=True) == 152_280


def test_output_unchanged_right_after_apply():
    base, model = _adapted("resnet18-mlp")
    x = torch.randn(3, 5, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x))


def test_save_pretrained_loads_back_with_plain_peft(tmp_path):
    base, model = _adapted("resnet18-mlp")
    _randomise_lora(model)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved)  # peft's own key names
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    assert count_fused(loaded) == 0
    x = torch.randn(3, 5, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-5)


def test_merge_and_unload_equals_adapted_outputs():
    _, model = _adapted("resnet18-mlp")
    _randomise_lora(model)
    x = torch.randn(3, 5, 64, 64)
    with torch.no_grad():
        adapted = model(x)
        merged = model.merge_and_unload()
        assert not any(isinstance(m, peft.tuners.lora.LoraLayer) for m in merged.modules())
        torch.testing.assert_close(merged(x), adapted, rtol=1e-4, atol=1e-5)


def test_disabled_or_merged_adapters_fall_back_to_peft():
    base, model = _adapted("resnet18-mlp")
    _randomise_lora(model)
    x = torch.randn(3, 5, 64, 64)
    with torch.no_grad():
        adapted = model(x)
        with model.disable_adapter():
            torch.testing.assert_close(model(x), base(x))
        model.merge_adapter()  # the delta now lives in W: adding it again would double it
        torch.testing.assert_close(model(x), adapted, rtol=1e-4, atol=1e-5)


def test_dropout_keeps_peft_forward():
    torch.manual_seed(0)
    _, model = _adapted("cnn-small", img_size=16, dropout=0.2)
    _randomise_lora(model)
    model.train()
    x = torch.randn(4, 5, 16, 16)
    torch.manual_seed(3)
    fused_path = model(x)
    unfuse_lora(model)
    torch.manual_seed(3)
    torch.testing.assert_close(fused_path, model(x))  # same dropout masks: peft's own path ran both times


def test_unfused_strategy_is_plain_peft():
    _, model = _adapted("cnn-small", img_size=16, fused=False)
    assert count_fused(model) == 0 and fuse_lora(model) > 0


def test_merged_conv_weight_in_channels_last_layout():
    gen = torch.Generator().manual_seed(0)
    w, a, b = (torch.randn(s, generator=gen) for s in ((8, 6, 3, 3), (2, 6, 3, 3), (8, 2, 1, 1)))
    dense = merged_conv_weight(w, a, b, 2.0)
    cl = merged_conv_weight(*(t.contiguous(memory_format=torch.channels_last) for t in (w, a, b)), 2.0)
    expected = w + 2.0 * torch.einsum("or,rikl->oikl", b[:, :, 0, 0], a)
    torch.testing.assert_close(dense, expected)
    torch.testing.assert_close(cl, expected)
    assert cl.is_contiguous(memory_format=torch.channels_last)
