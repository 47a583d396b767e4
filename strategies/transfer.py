"""Strategies that change which of the existing weights train: none, the head, all, biases, norms, stem, last k blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from zpeft.strategies.base import Strategy, freeze_all, unfreeze
from zpeft.strategies.registry import register_strategy

if TYPE_CHECKING:
    from torch import nn

    from zpeft.backbones.regressor import Regressor


@register_strategy("zero-shot")
@dataclass(frozen=True)
class ZeroShot(Strategy):
    """The photo-z base model evaluated as it is: no retraining."""

    trains_on: ClassVar[str] = "none"

    def prepare(self, model: Regressor) -> nn.Module:
        return freeze_all(model)


@register_strategy("head-only")
@dataclass(frozen=True)
class HeadOnly(Strategy):
    """Traditional transfer learning: the backbone (BatchNorm statistics included) frozen, the head retrained."""

    def prepare(self, model: Regressor) -> nn.Module:
        freeze_all(model)
        unfreeze(model.head_parameters())
        return model


@register_strategy("full")
@dataclass(frozen=True)
class Full(Strategy):
    """Every weight of the base model fine-tuned on spec-z."""

    bn: Literal["frozen", "train"] = "train"
    default_lr: ClassVar[float] = 3e-4

    def prepare(self, model: Regressor) -> nn.Module:
        unfreeze(model.parameters())
        return model


@register_strategy("bitfit")
@dataclass(frozen=True)
class BitFit(Strategy):
    """Only bias terms (BatchNorm shifts included) and the head train (Ben Zaken et al. 2022)."""

    def prepare(self, model: Regressor) -> nn.Module:
        freeze_all(model)
        unfreeze(p for n, p in model.named_parameters() if n.endswith("bias"))
        unfreeze(model.head_parameters())
        return model


@register_strategy("norm-only")
@dataclass(frozen=True)
class NormOnly(Strategy):
    """Only normalisation layers' affine parameters and the head train."""

    def prepare(self, model: Regressor) -> nn.Module:
        from torch import nn

        freeze_all(model)
        norms = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
        unfreeze(p for m in model.modules() if isinstance(m, norms) for p in m.parameters(recurse=False))
        unfreeze(model.head_parameters())
        return model


@register_strategy("paper-tl")
@dataclass(frozen=True)
class PaperTransfer(Strategy):
    """The reference paper's "transfer learning": the stem (first conv + its norm) and the head train, at lr 1e-8.

    It reproduces that protocol (NeurIPS ML4PS 2025, ResNet18 + MLP on HSC cutouts: input layer
    and regressor unfrozen, everything else frozen, learning rate 1e-8) so the report can show how
    much of LoRA's gain over "transfer learning" comes from the baseline's setting rather than from
    LoRA. The stem is `Regressor.stem_names()`; BatchNorm statistics stay frozen as in head-only.
    """

    default_lr: ClassVar[float] = 1e-8
    rate_is_protocol: ClassVar[bool] = True  # `zpeft tune` leaves it at the paper's rate

    def prepare(self, model: Regressor) -> nn.Module:
        freeze_all(model)
        unfreeze(model.stem_parameters())
        unfreeze(model.head_parameters())
        return model


@register_strategy("last-k")
@dataclass(frozen=True)
class LastK(Strategy):
    """The last `k` blocks of the backbone, everything after them and the head train; the earlier blocks stay frozen.

    Blocks are `Regressor.block_names()`: cnn-small's four conv blocks, resnet18-mlp's four
    residual stages (k=1 is layer4, two BasicBlocks), timm's stages or transformer blocks. Modules
    registered after the last block (EfficientNet's conv_head, a ViT's final norm) train with the
    head. `bn` is one policy for the whole model (the training loop's), so the default is "frozen":
    with "train" the frozen blocks' BatchNorm statistics would drift too.
    """

    k: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"last-k k must be an integer >= 1, got {self.k!r}")

    def label(self) -> str:
        return f"{self.name}{self.k}"

    def prepare(self, model: Regressor) -> nn.Module:
        blocks = model.block_names()
        if self.k > len(blocks):
            raise ValueError(f"last-k k={self.k} but backbone {model.backbone_name!r} has {len(blocks)} blocks; "
                             f"k must be 1..{len(blocks)}")
        prefixes = tuple(f"{b}." for b in blocks[-self.k:])
        named = list(model.named_parameters())
        start = next((i for i, (n, _) in enumerate(named) if n.startswith(prefixes)), None)
        if start is None:
            raise ValueError(f"last-k k={self.k}: the last {self.k} blocks of {model.backbone_name!r} hold no parameters")
        freeze_all(model)
        unfreeze(p for _, p in named[start:])
        unfreeze(model.head_parameters())
        return model
