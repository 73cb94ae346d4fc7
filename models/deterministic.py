"""The baseline: one network, one sample (S=1); confidence is the max softmax (MCP)."""

from __future__ import annotations

import torch
from torch import nn

from models.base import UncertaintyModel


class Deterministic(UncertaintyModel):
    """Wraps a network with `forward_features`/`forward_head` as a one-sample model."""

    method = "deterministic"

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] -> [1, B, D]
        return self.net.forward_features(x).unsqueeze(0)

    def head_samples(self, feats: torch.Tensor) -> torch.Tensor:
        # [1, B, D] -> [1, B, K]
        return self.net.forward_head(feats[0]).unsqueeze(0)
