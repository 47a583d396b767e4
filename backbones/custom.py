"""Custom CNN backbones: a small CNN for CPU runs and the reference ResNet18 + MLP regressor."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18

from backbones.registry import register_backbone
from backbones.regressor import Regressor


@register_backbone("cnn-small")
def cnn_small(in_chans: int = 5, img_size: int = 64, width: int = 16) -> Regressor:
    """Four conv blocks (conv-BN-SiLU, stride 2 from the second) and a small MLP head: 65k params at width 16.

    Width 16 trains 2.7x faster on CPU than width 32 and kept the quick suite's strategy ordering
    in a two-seed study, so it is the default for CPU runs.
    """
    w = width
    features = nn.Sequential(
        _conv_block(in_chans, w, stride=1),
        _conv_block(w, 2 * w, stride=2),
        _conv_block(2 * w, 4 * w, stride=2),
        _conv_block(4 * w, 4 * w, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    head = nn.Sequential(nn.Linear(4 * w, 64), nn.SiLU(), nn.Dropout(0.1), nn.Linear(64, 1))
    return Regressor(nn.Sequential(features, head), head_names=["1"], name="cnn-small")


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


class ResNet18MLP(nn.Module):
    """torchvision ResNet18 with an `in_chans` 7x7 stride-2 stem and an MLP regressor 512-512-256-1."""

    def __init__(self, in_chans: int = 5, dropout: float = 0.5) -> None:
        super().__init__()
        self.resnet = resnet18(weights=None)
        self.resnet.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.resnet.fc = nn.Identity()
        self.mlp = nn.Sequential(
            nn.Linear(512, 512), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(512, 256), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(256, 1),
        )

    def forward(self, x):
        return self.mlp(self.resnet(x))


@register_backbone("resnet18-mlp")
def resnet18_mlp(in_chans: int = 5, img_size: int = 64) -> Regressor:
    """The reference paper's model (11,577,025 parameters with 5 bands)."""
    return Regressor(ResNet18MLP(in_chans), head_names=["mlp"], name="resnet18-mlp")
