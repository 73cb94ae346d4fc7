"""MC dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation").

Dropout stays on at inference and T stochastic forward passes approximate the
predictive of a variational posterior over the weights. Only the fully connected
head is stochastic (dropout sits before fc1 and before fc2, exactly where
`SmallCNN` applies it in training), so the conv features are computed once and
only the cheap head runs T times, as one batched computation.

Masks are drawn explicitly (`models.sampling.dropout_mask`) rather than through
`nn.Dropout`, so inference never depends on `module.train()`: the shared serving
model is never flipped to training mode, and the BatchNorm layers keep their
running statistics.

Training: train a ``SmallCNN(dropout=p)`` with plain cross-entropy in train mode
(that is the dropout the posterior is fitted with); serve ``mc_dropout(net, T)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.architectures import SmallCNN, build_architecture
from models.base import UncertaintyModel
from models.sampling import dropout_mask, seeded_generator


class MCDropout(UncertaintyModel):
    """T dropout samples of a `SmallCNN` head.

    `features(x)`: flat conv features ``[1, B, F]`` (F = ``net.flat_dim``, *not* the
    hidden D: dropout acts before fc1, so the stochastic part starts there).
    `head_samples(f)`: logits ``[T, B, K]``.
    """

    method = "mc_dropout"

    def __init__(
        self,
        net: SmallCNN,
        num_samples: int = 20,
        p: float | None = None,
        seed: int | None = None,
        max_rows: int = 2048,
    ) -> None:
        super().__init__()
        p = net.dropout if p is None else float(p)
        if not 0.0 < p < 1.0:
            raise ValueError(f"MC dropout needs 0 < p < 1, got {p} (train the SmallCNN with dropout=p)")
        if net.dropout != p:
            # The posterior is the one fitted with the training rate; another rate at
            # inference (or a net trained without dropout) would be silently wrong.
            raise ValueError(f"net has dropout {net.dropout}, MC dropout asked for {p}; build SmallCNN(dropout=p)")
        if num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        self.net = net
        self.num_samples = int(num_samples)
        self.p = p
        self.seed = seed
        self.generator = seeded_generator(seed)
        # Rows (T*B) per chunk: on CPU, matmuls beyond a few thousand rows get slower per row.
        self.max_rows = max_rows
        self.feature_dim = net.flat_dim

    def method_params(self) -> dict[str, Any]:
        """JSON-able hyperparameters for the manifest's `method_params`."""
        return {"num_samples": self.num_samples, "p": self.p, "seed": self.seed}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] -> [1, B, F]; deterministic, computed once for all T samples.
        return self.net.forward_conv(x).unsqueeze(0)

    def _sample_chunk(self, flat: torch.Tensor, t: int) -> torch.Tensor:
        # flat [B, F] -> logits [t, B, K]; each of the t rows of a sample gets its own masks.
        b, f = flat.shape
        rows = flat.unsqueeze(0) * dropout_mask((t, b, f), self.p, flat, self.generator)
        hidden = torch.relu(self.net.fc1(rows))  # [t, B, D]
        hidden = hidden * dropout_mask(tuple(hidden.shape), self.p, hidden, self.generator)
        return self.net.fc2(hidden)  # [t, B, K]

    def head_samples(self, feats: torch.Tensor) -> torch.Tensor:
        # [1, B, F] -> [T, B, K]
        flat = feats[0]
        per_chunk = max(1, self.max_rows // max(1, flat.shape[0]))
        chunks = []
        for start in range(0, self.num_samples, per_chunk):
            chunks.append(self._sample_chunk(flat, min(per_chunk, self.num_samples - start)))
        return torch.cat(chunks, dim=0)


def mc_dropout(net: nn.Module, num_samples: int = 20, p: float | None = None, seed: int | None = None) -> MCDropout:
    """Wrap a trained ``SmallCNN(dropout=p)`` for MC-dropout inference (T = `num_samples`)."""
    if not isinstance(net, SmallCNN):
        raise TypeError(f"mc_dropout needs a SmallCNN, got {type(net).__name__}")
    return MCDropout(net, num_samples=num_samples, p=p, seed=seed)


def build_mc_dropout(arch: str, arch_params: dict[str, Any], method_params: dict[str, Any]) -> UncertaintyModel:
    """METHODS builder: an untrained MC-dropout model to load a bundle's weights into."""
    return mc_dropout(build_architecture(arch, **arch_params), **method_params)
