"""MC dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation").

Dropout stays on at inference and T stochastic forward passes approximate the
predictive of a variational posterior over the weights. Only the fully connected
head is stochastic (dropout sits before fc1 and before fc2, exactly where
`SmallCNN` applies it in training), so the conv features are computed once and
only the cheap head runs T times, as one batched computation.

The T masks are drawn from the bundle's seed at every call and shared by the batch
(`models.sampling`: common random numbers): each input still gets T independent
dropout draws, and the same input always gets the same answer. Masks are drawn
explicitly (`models.sampling.dropout_mask`) rather than through `nn.Dropout`, so inference never depends on `module.train()`: the shared serving
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
from models.sampling import call_generator, dropout_mask


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
        # Rows (T*B) per chunk: on CPU, matmuls beyond a few thousand rows get slower per row.
        self.max_rows = max_rows
        self.feature_dim = net.flat_dim

    def method_params(self) -> dict[str, Any]:
        """JSON-able hyperparameters for the manifest's `method_params`."""
        return {"num_samples": self.num_samples, "p": self.p, "seed": self.seed}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] -> [1, B, F]; deterministic, computed once for all T samples.
        return self.net.forward_conv(x).unsqueeze(0)

    def _sample_chunk(self, flat: torch.Tensor, mask_in: torch.Tensor, mask_hidden: torch.Tensor) -> torch.Tensor:
        # flat [B, F], masks [t, 1, F] and [t, 1, D] (shared by the batch) -> logits [t, B, K]
        hidden = torch.relu(self.net.fc1(flat.unsqueeze(0) * mask_in))  # [t, B, D]
        return self.net.fc2(hidden * mask_hidden)  # [t, B, K]

    def masks(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The T dropout masks of this bundle, ``[T, 1, F]`` before fc1 and ``[T, 1, D]`` before fc2.

        Drawn afresh from the bundle's seed at every call (`models.sampling`), so they
        are the same at every call and for every input: an input's answer does not
        depend on its batch. All drawn before any chunking, so the chunk size (which
        follows the batch size) cannot change them either.
        """
        gen = call_generator(self.seed)
        t = self.num_samples
        mask_in = dropout_mask((t, 1, self.net.flat_dim), self.p, like, gen)
        return mask_in, dropout_mask((t, 1, self.net.hidden_dim), self.p, like, gen)

    def head_samples(self, feats: torch.Tensor) -> torch.Tensor:
        # [1, B, F] -> [T, B, K]
        flat = feats[0]
        mask_in, mask_hidden = self.masks(flat)
        per_chunk = max(1, self.max_rows // max(1, flat.shape[0]))
        chunks = []
        for start in range(0, self.num_samples, per_chunk):
            end = min(start + per_chunk, self.num_samples)
            chunks.append(self._sample_chunk(flat, mask_in[start:end], mask_hidden[start:end]))
        return torch.cat(chunks, dim=0)


def mc_dropout(net: nn.Module, num_samples: int = 20, p: float | None = None, seed: int | None = None) -> MCDropout:
    """Wrap a trained ``SmallCNN(dropout=p)`` for MC-dropout inference (T = `num_samples`)."""
    if not isinstance(net, SmallCNN):
        raise TypeError(f"mc_dropout needs a SmallCNN, got {type(net).__name__}")
    return MCDropout(net, num_samples=num_samples, p=p, seed=seed)


def build_mc_dropout(arch: str, arch_params: dict[str, Any], method_params: dict[str, Any]) -> UncertaintyModel:
    """METHODS builder: an untrained MC-dropout model to load a bundle's weights into."""
    return mc_dropout(build_architecture(arch, **arch_params), **method_params)
