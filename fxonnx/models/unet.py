"""A small U-Net: two down levels, a bottleneck, and an up path that exercises both learned
(ConvTranspose2d) and fixed (bilinear Upsample) up-sampling, joined to the encoder by torch.cat.
"""

from __future__ import annotations

import torch
from torch import nn

from fxonnx.models._registry import register


class DoubleConv(nn.Sequential):
    """(3x3 conv, BatchNorm, ReLU) twice; padding keeps the spatial size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class UNetSmall(nn.Module):
    """Widths w, 2w at the two encoder levels, 4w in the bottleneck; 1x1 conv to the classes."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base: int = 16) -> None:
        super().__init__()
        w1, w2, w3 = base, 2 * base, 4 * base
        self.enc1 = DoubleConv(in_channels, w1)
        self.enc2 = DoubleConv(w1, w2)
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(w2, w3)
        self.up2 = nn.ConvTranspose2d(w3, w2, kernel_size=2, stride=2)
        self.dec2 = DoubleConv(2 * w2, w2)
        self.up1 = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(w2, w1, 3, padding=1),
        )
        self.dec1 = DoubleConv(2 * w1, w1)
        self.head = nn.Conv2d(w1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.enc1(x)
        s2 = self.enc2(self.pool(s1))
        b = self.bottleneck(self.pool(s2))
        d2 = self.dec2(torch.cat([self.up2(b), s2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), s1], dim=1))
        return self.head(d1)


@register(
    "unet_small",
    description="Small U-Net, base width 16, ConvTranspose2d + bilinear up-sampling, 2 classes",
    input_shapes=(("N", 3, 64, 64),),
    tags=("architecture", "conv", "batchnorm"),
)
def unet_small() -> nn.Module:
    return UNetSmall()
