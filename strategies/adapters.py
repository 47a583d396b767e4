"""Adapter strategies from peft: LoRA, DoRA, LoHa, LoKr on every conv (groups == 1) and linear layer.

The base weights stay frozen; only the adapters train. No bias and no modules_to_save by
default, so `resnet18-mlp` with LoRA r=4 has the reference paper's 152,280 trainable parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from zpeft.strategies.base import Strategy
from zpeft.strategies.registry import register_strategy

if TYPE_CHECKING:  # peft and torch load when a model is prepared, not when strategies are listed or checked
    import peft
    from torch import nn

    from zpeft.backbones.regressor import Regressor


@dataclass(frozen=True)
class _Adapter(Strategy):
    """Shared fields and checks of the peft adapters."""

    rank: int = 4
    alpha: float | None = None  # None: 4 x rank, as in the reference paper
    dropout: float = 0.0
    default_lr: ClassVar[float] = 2e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"{self.name} rank must be an integer >= 1, got {self.rank!r}")
        if self.alpha is not None and self.alpha <= 0:
            raise ValueError(f"{self.name} alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{self.name} dropout must be in [0, 1), got {self.dropout}")

    @property
    def scale_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 4.0 * self.rank

    def label(self) -> str:
        return f"{self.name}-r{self.rank}"

    def peft_config(self, targets: list[str]) -> peft.PeftConfig:
        raise NotImplementedError

    def check_rank(self, model: Regressor) -> None:
        """ValueError when the rank exceeds every targeted layer's smallest dimension (adapters bigger than layers)."""
        modules = dict(model.named_modules())
        sizes = [_smallest_dimension(modules[name]) for name in model.adapter_targets()]
        if sizes and self.rank > max(sizes):
            raise ValueError(f"{self.name} rank {self.rank} exceeds the smallest dimension of every targeted layer "
                             f"of {model.backbone_name} (at most {max(sizes)}): the adapters would outgrow the layers")

    def prepare(self, model: Regressor) -> nn.Module:
        import peft

        self.check_rank(model)
        return peft.get_peft_model(model, self.peft_config(model.adapter_targets()))


@register_strategy("lora")
@dataclass(frozen=True)
class LoRA(_Adapter):
    """Low-rank adapters: W + (alpha / r) B A on each targeted layer (Hu et al. 2021)."""

    # One convolution with the merged weight instead of peft's three: the same function and
    # parameters, about full fine-tuning's speed on GPU; the model stays a PeftModel.
    fused: bool = True

    def prepare(self, model: Regressor) -> nn.Module:
        adapted = super().prepare(model)
        if self.fused:
            from zpeft.strategies.fast_lora import fuse_lora

            fuse_lora(adapted)
        return adapted

    def peft_config(self, targets: list[str]) -> peft.PeftConfig:
        import peft

        return peft.LoraConfig(r=self.rank, lora_alpha=self.scale_alpha, lora_dropout=self.dropout,
                               target_modules=targets, bias="none")


@register_strategy("dora")
@dataclass(frozen=True)
class DoRA(_Adapter):
    """Weight-decomposed LoRA: a trained magnitude per output channel plus a LoRA direction (Liu et al. 2024)."""

    def peft_config(self, targets: list[str]) -> peft.PeftConfig:
        import peft

        return peft.LoraConfig(r=self.rank, lora_alpha=self.scale_alpha, lora_dropout=self.dropout,
                               target_modules=targets, bias="none", use_dora=True)


@register_strategy("loha")
@dataclass(frozen=True)
class LoHa(_Adapter):
    """Low-rank Hadamard product adapters (Hyeon-Woo et al. 2022)."""

    def peft_config(self, targets: list[str]) -> peft.PeftConfig:
        import peft

        return peft.LoHaConfig(r=self.rank, alpha=self.scale_alpha, rank_dropout=self.dropout,
                               target_modules=targets)


@register_strategy("lokr")
@dataclass(frozen=True)
class LoKr(_Adapter):
    """Low-rank Kronecker product adapters (Yeh et al. 2023)."""

    def peft_config(self, targets: list[str]) -> peft.PeftConfig:
        import peft

        return peft.LoKrConfig(r=self.rank, alpha=self.scale_alpha, rank_dropout=self.dropout,
                               target_modules=targets)



def _smallest_dimension(layer) -> int:
    """min(fan-in, fan-out) of a Linear or Conv2d layer: the largest rank a low-rank update of it can have."""
    weight = layer.weight
    return min(weight.shape[0], weight[0].numel())
