"""The one interface every uncertainty method implements.

A model maps a normalised batch ``x`` of shape ``[B, C, H, W]`` to logit samples of
shape ``[S, B, K]`` (S=1 for a plain network, S=T for MC dropout, S=M for an
ensemble, S=K for a variational network). Everything downstream works on samples.
"""

from __future__ import annotations

import torch
from torch import nn


class UncertaintyModel(nn.Module):
    """Base class: subclasses implement `features` and `head_samples`.

    `features(x)` returns penultimate features ``[S_f, B, D]`` (S_f is 1 when the
    backbone is shared, M for an ensemble) and `head_samples(f)` turns them into logit
    samples ``[S, B, K]``. Splitting the two lets ConfidNet and Mahalanobis reuse the
    same forward pass as the classifier.
    """

    method: str = "abstract"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head_samples(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pooled features of every layer, each ``[S_f, B, D_l]`` (optional; see SmallCNN.forward_layers).

        Wrappers that keep a `SmallCNN` backbone as ``self.net`` (deterministic, MC
        dropout, Laplace) get the backbone's layers with S_f = 1 (MC dropout's mean
        network: dropout only enters its stochastic head). Others override or raise.
        """
        net = getattr(self, "net", None)
        if not hasattr(net, "forward_layers"):
            raise NotImplementedError(f"method {self.method!r} does not expose per-layer features")
        return [f.unsqueeze(0) for f in net.forward_layers(x)]

    def sample_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logit samples ``[S, B, K]`` for a normalised batch ``[B, C, H, W]``."""
        return self.head_samples(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sample_logits(x)
