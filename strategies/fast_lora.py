"""Merged-weight forward for peft's LoRA Conv2d and Linear layers: one convolution with W + s B A.

peft computes base(x) + s * B(A(x)): per layer three convolutions, two with only r channels,
which a launch-bound GPU runs at under half the speed of full fine-tuning. The same function
is conv(x, W + s B A): one convolution the size of the base layer, whose weight gradient
reaches A and B through a tiny matmul. Parameters, state dict, `save_pretrained` and
`merge_and_unload` are peft's own: a fused layer only changes class to a subclass whose
forward takes the merged path when that is exact (one plain adapter active, no dropout,
not merged) and otherwise defers to peft.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft.tuners import lora as peft_lora
from torch import Tensor, nn


def merged_conv_weight(weight: Tensor, lora_a: Tensor, lora_b: Tensor, scale: float) -> Tensor:
    """W + scale * B A for a conv weight (out, in, kh, kw), A (r, in, kh, kw), B (out, r, 1, 1).

    channels_last weights (the GPU loop's layout) are merged in that layout so that neither
    the merge nor the convolution copies the weight into another layout.
    """
    out_ch, in_ch, kh, kw = weight.shape
    rank = lora_a.shape[0]
    b = lora_b.reshape(out_ch, rank)
    if weight.is_contiguous():
        return torch.addmm(weight.reshape(out_ch, -1), b, lora_a.reshape(rank, -1), alpha=scale).view(weight.shape)
    w = weight.permute(0, 2, 3, 1).reshape(out_ch, -1)
    a = lora_a.permute(0, 2, 3, 1).reshape(rank, -1)
    return torch.addmm(w, b, a, alpha=scale).view(out_ch, kh, kw, in_ch).permute(0, 3, 1, 2)


def _plain_adapter(layer: peft_lora.LoraLayer, kwargs: dict) -> str | None:
    """The one active adapter when the merged forward computes exactly peft's function, else None."""
    if layer.disable_adapters or layer.merged or kwargs:
        return None
    active = layer.active_adapters
    if len(active) != 1:
        return None
    name = active[0]
    if (name not in layer.lora_A or name in layer.lora_variant or layer.lora_bias.get(name, False)
            or not isinstance(layer.lora_dropout[name], nn.Identity)):
        return None
    return name


class FusedLoraConv2d(peft_lora.Conv2d):
    """peft's LoRA Conv2d with the merged-weight forward (see the module docstring)."""

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        name = None if args else _plain_adapter(self, kwargs)
        if name is None:
            return super().forward(x, *args, **kwargs)
        base = self.base_layer
        weight = merged_conv_weight(base.weight, self.lora_A[name].weight, self.lora_B[name].weight,
                                    self.scaling[name])
        return base._conv_forward(x, weight, base.bias)


class FusedLoraLinear(peft_lora.Linear):
    """peft's LoRA Linear with the merged-weight forward: linear(x, W + s B A)."""

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        name = None if args else _plain_adapter(self, kwargs)
        if name is None:
            return super().forward(x, *args, **kwargs)
        base = self.base_layer
        weight = torch.addmm(base.weight, self.lora_B[name].weight, self.lora_A[name].weight, alpha=self.scaling[name])
        return F.linear(x, weight, base.bias)


_FUSED = {peft_lora.Conv2d: FusedLoraConv2d, peft_lora.Linear: FusedLoraLinear}
_UNFUSED = {fused: plain for plain, fused in _FUSED.items()}


def can_fuse(layer: nn.Module) -> bool:
    """True for a peft LoRA Conv2d/Linear whose base layer the merged forward reproduces exactly.

    Excluded: subclasses of the base types (timm's same-padding convs pad in forward), grouped
    or dilated convs and non-zero padding modes (peft's A conv ignores them), fan-in-fan-out
    Linear layers (GPT-2 style transposed weights) and mixed dtypes.
    """
    if type(layer) not in _FUSED:
        return False
    base = layer.base_layer
    if isinstance(layer, peft_lora.Conv2d):
        ok = (type(base) is nn.Conv2d and base.groups == 1 and base.dilation == (1, 1)
              and base.padding_mode == "zeros")
    else:
        ok = type(base) is nn.Linear and not layer.fan_in_fan_out
    dtypes = {base.weight.dtype} | {p.dtype for p in layer.lora_A.parameters()} | {p.dtype for p in layer.lora_B.parameters()}
    return ok and len(dtypes) == 1


def fuse_lora(model: nn.Module) -> int:
    """Switch every fusable peft LoRA layer of `model` to the merged-weight forward; returns how many."""
    count = 0
    for module in model.modules():
        if can_fuse(module):
            module.__class__ = _FUSED[type(module)]
            count += 1
    return count


def unfuse_lora(model: nn.Module) -> int:
    """Undo `fuse_lora`: every fused layer back to peft's own class; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) in _UNFUSED:
            module.__class__ = _UNFUSED[type(module)]
            count += 1
    return count


def count_fused(model: nn.Module) -> int:
    """Number of layers of `model` running the merged-weight forward."""
    return sum(type(m) in _UNFUSED for m in model.modules())
