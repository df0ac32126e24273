"""The recogniser network: a small CRNN (strided conv features, 1-D conv context, CTC head).

Strided convolutions instead of full-resolution ones and a convolutional context head instead
of an LSTM keep it near 30 M multiply-adds at 32x160, well under a millisecond per crop on one
CPU thread, and quick to train on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (32, 64, 96, 128, 160)  # channels of the four conv blocks and the feature conv


def widths_for(scale: float) -> tuple[int, ...]:
    """The channel widths of a network `scale` times as wide as the standard one (multiples of 8)."""
    return tuple(int(round(w * scale / 8)) * 8 for w in WIDTHS)


def _block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class CRNN(nn.Module):
    """(N, 1, 32, W) grey in [-1, 1] → (N, W/4, classes) logits; one time step per 4 pixels."""

    def __init__(self, classes: int, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        self.widths = tuple(widths)
        self.features = nn.Sequential(
            *_block(1, c1, 2),                                # 16 x W/2
            *_block(c1, c2, 2),                               # 8 x W/4
            *_block(c2, c3), nn.MaxPool2d((2, 1)),            # 4 x W/4
            *_block(c3, c4), nn.MaxPool2d((2, 1)),            # 2 x W/4
            nn.Conv2d(c4, c5, (2, 1), bias=False), nn.BatchNorm2d(c5), nn.ReLU(inplace=True),  # 1 x W/4
        )
        self.context = nn.Sequential(
            nn.Conv1d(c5, c5, 3, padding=1, bias=False), nn.BatchNorm1d(c5), nn.ReLU(inplace=True),
            nn.Conv1d(c5, c5, 3, padding=1, bias=False), nn.BatchNorm1d(c5), nn.ReLU(inplace=True),
            nn.Dropout(0.1),
        )
        self.head = nn.Conv1d(c5, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x).squeeze(2)  # N, 160, T
        return self.head(self.context(f)).transpose(1, 2)  # N, T, classes


class ExportWrapper(nn.Module):
    """The network with softmax on its output, as shipped in the ONNX file: (N, T, classes) probabilities."""

    def __init__(self, net: CRNN):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)
