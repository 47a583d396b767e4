"""The common wrapper every backbone returns: images in, one redshift per image out."""

from __future__ import annotations

from torch import Tensor, nn


class Regressor(nn.Module):
    """Wraps a network whose output is (B, 1) and says which of its modules form the head.

    `head_names` are qualified module names (as in `named_modules()`), used by head-only
    transfer and by adapters; `adapter_targets()` lists the layers adapters wrap by default.
    """

    def __init__(self, net: nn.Module, head_names: list[str], name: str) -> None:
        super().__init__()
        self.net = net
        self.head_names = [f"net.{h}" for h in head_names]
        self.backbone_name = name
        modules = dict(self.named_modules())
        missing = [h for h in self.head_names if h not in modules]
        if missing:
            raise ValueError(f"backbone {name!r}: head modules {missing} not found in the network")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).reshape(x.shape[0])

    def adapter_targets(self) -> list[str]:
        """Every Conv2d with groups == 1 and every Linear: the layers peft can adapt at any rank."""
        return [
            name
            for name, module in self.named_modules()
            if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)
        ]

    def head_parameters(self) -> list[nn.Parameter]:
        modules = dict(self.named_modules())
        return [p for h in self.head_names for p in modules[h].parameters()]
