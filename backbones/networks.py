"""The networks behind the custom backbones (torch modules; imported when a backbone is built)."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18


def conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
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
