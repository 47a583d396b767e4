"""The common wrapper every backbone returns: images in, one redshift per image out."""

from __future__ import annotations

import re

from torch import Tensor, nn

BLOCK_CONTAINERS = ("stages", "blocks", "layers")  # timm's names for the sequence of stages/blocks
NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


class Regressor(nn.Module):
    """Wraps a network whose output is (B, 1) and says which of its modules form the head, stem and blocks.

    `head_names` are qualified module names (as in `named_modules()`), used by head-only
    transfer and by adapters; `adapter_targets()` lists the layers adapters wrap by default.
    `block_names` (optional) are the feature extractor's blocks in forward order, used by last-k
    fine-tuning; without them `block_names` follows timm's layout (see `blocks()`).
    """

    def __init__(self, net: nn.Module, head_names: list[str], name: str, block_names: list[str] | None = None) -> None:
        super().__init__()
        self.net = net
        self.head_names = [f"net.{h}" for h in head_names]
        self.backbone_name = name
        self._block_names = None if block_names is None else [f"net.{b}" for b in block_names]
        modules = dict(self.named_modules())
        missing = [h for h in self.head_names + (self._block_names or []) if h not in modules]
        if missing:
            raise ValueError(f"backbone {name!r}: modules {missing} not found in the network")

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

    def stem_names(self) -> list[str]:
        """The input layer: the first Conv2d (in module order, the one that sees the images) and the norm right after it.

        The norm counts only when it is the next module in `named_modules()` order (ResNet's bn1,
        EfficientNet's bn1, ConvNeXt's stem LayerNorm, cnn-small's first BatchNorm); a ViT's patch
        embedding has none, so its stem is the patch projection alone.
        """
        modules = list(self.named_modules())
        first = next((i for i, (_, m) in enumerate(modules) if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ValueError(f"backbone {self.backbone_name!r} has no Conv2d: no stem to train")
        names = [modules[first][0]]
        if first + 1 < len(modules) and isinstance(modules[first + 1][1], NORMS):
            names.append(modules[first + 1][0])
        return names

    def stem_parameters(self) -> list[nn.Parameter]:
        modules = dict(self.named_modules())
        return [p for s in self.stem_names() for p in modules[s].parameters()]

    def block_names(self) -> list[str]:
        """The feature extractor's blocks, in forward order: the ones given, else timm's layout.

        timm layout: the children of the network's `stages`, `blocks` or `layers` container
        (ConvNeXt stages, EfficientNet stages, ViT transformer blocks), else its `layer<N>`
        children (ResNet stages).
        """
        if self._block_names is not None:
            return list(self._block_names)
        children = dict(self.net.named_children())
        for container in BLOCK_CONTAINERS:
            if isinstance(children.get(container), nn.Sequential | nn.ModuleList):
                return [f"net.{container}.{c}" for c, _ in children[container].named_children()]
        layers = [c for c in children if re.fullmatch(r"layer\d+", c)]
        if layers:
            return [f"net.{c}" for c in sorted(layers, key=lambda c: int(c[5:]))]
        raise ValueError(f"backbone {self.backbone_name!r}: no blocks found (no {'/'.join(BLOCK_CONTAINERS)} "
                         "container, no layer<N> children); give the Regressor block_names")
