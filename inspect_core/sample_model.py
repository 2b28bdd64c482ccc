"""The small CNN shipped with sample_data/model (trained by sample_data/train_sample_model.py).

``make_model(num_classes=5)`` is the factory for the state-dict form: ``inspect_core.sample_model:make_model``.
"""
from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class SmallCNN(nn.Module):
    """Four conv blocks, global average pooling, one linear head. ``embed`` gives the pooled features."""

    def __init__(self, num_classes: int = 5, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(_block(3, width), _block(width, width * 2), _block(width * 2, width * 4),
                                      _block(width * 4, width * 4))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(width * 4, num_classes)

    @torch.jit.export
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def make_model(num_classes: int = 5) -> SmallCNN:
    return SmallCNN(num_classes=num_classes)
