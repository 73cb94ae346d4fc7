"""A Bayes-by-Backprop `SmallCNN` and its ELBO loss (Blundell et al. 2015).

Same anatomy as `models.architectures.SmallCNN` (three conv blocks, fc1, fc2) with
every conv and linear layer variational; BatchNorm stays deterministic (its
parameters are point estimates; in eval mode it is a fixed affine map). K posterior
samples are one batched forward. In training, over the batch repeated K times: with
the local reparameterisation trick each row gets independent noise. At inference, K
whole weight draws per layer, shared by the batch and restarted from the bundle's seed
at every call (`models.sampling`), so an input's K samples do not depend on its batch.

Training: ``model = variational_cnn(**arch_params, prior={...})`` in train mode,
``logits = model.sample_logits(x, num_samples=1)``,
``loss = elbo_loss(logits, y, kl_divergence(model), len(train_set))``.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from models.base import UncertaintyModel
from models.priors import Prior, build_prior, prior_spec
from models.sampling import call_generator, seeded_generator
from models.variational import Conv2dVariational, LinearVariational, VariationalLayer

#: Rows (K * B) per forward: a served batch of 64 with K = 10 is one forward.
MAX_ROWS = 640


class VariationalCNN(UncertaintyModel):
    """`features(x)` -> ``[K, B, D]`` (one posterior sample per row), `head_samples` -> ``[K, B, C]``."""

    method = "variational"

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        widths: tuple[int, ...] | list[int] = (16, 32, 64),
        hidden: int = 128,
        dropout: float = 0.0,
        prior: Prior | None = None,
        num_samples: int = 10,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        chans = [in_channels, *widths]
        self.conv = nn.Sequential(
            *(
                nn.Sequential(
                    Conv2dVariational(a, b, 3, padding=1, bias=False, prior=prior),
                    nn.BatchNorm2d(b),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
                for a, b in itertools.pairwise(chans)
            )
        )
        side = input_size
        for _ in widths:
            side //= 2
        self.flat_dim = widths[-1] * side * side
        self.feature_dim = hidden
        self.fc1 = LinearVariational(self.flat_dim, hidden, prior=prior)
        self.fc2 = LinearVariational(hidden, num_classes, prior=prior)
        # As in SmallCNN, dropout (if any) only regularises training, so `arch_params` mean the
        # same for every method; the inference noise comes from the weight posterior alone.
        self.dropout = dropout
        self.num_samples = int(num_samples)
        self.seed = seed
        self.generator = seeded_generator(seed)
        #: (key, draws) of `draw_weights`: inference reuses the draws while the key holds.
        self._draws: tuple[Any, list[tuple[torch.Tensor, torch.Tensor | None]]] | None = None

    @property
    def generator(self) -> torch.Generator | None:
        """The RNG of every variational layer (None: torch's global RNG)."""
        return self._generator

    @generator.setter
    def generator(self, gen: torch.Generator | None) -> None:
        self._generator = gen
        for m in self.modules():
            if isinstance(m, VariationalLayer):
                m.generator = gen

    def method_params(self) -> dict[str, Any]:
        """JSON-able hyperparameters for the manifest's `method_params`."""
        return {"num_samples": self.num_samples, "seed": self.seed, "prior": prior_spec(self.fc1.prior)}

    def features(self, x: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        # [B, C, H, W] -> [K, B, D]
        k = self.num_samples if num_samples is None else num_samples
        b = x.shape[0]
        if not self.training:
            draws = self.draw_weights(k)
            # Large batches (evaluation) go by groups of images, every group through the same
            # draws: beyond ~640 rows the convolutions got slower per row (measured 180-210
            # img/s at 1000-5000 rows against 300-470 at 250-640, K = 10).
            step = max(1, MAX_ROWS // k)
            return torch.cat([self._drawn_features(x[i : i + step], draws) for i in range(0, b, step)], dim=1)
        rows = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
        flat = nn.functional.dropout(self.conv(rows).flatten(1), self.dropout, self.training)
        hidden = torch.relu(self.fc1(flat))
        return hidden.view(k, b, -1)

    def _layers(self) -> list[VariationalLayer]:
        return [block[0] for block in self.conv] + [self.fc1, self.fc2]

    def draw_weights(self, k: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """k weight draws of every layer, conv blocks first, then fc1 and fc2.

        Each layer draws from its own stream of the bundle's seed: the same k networks for
        every input and every call. So they are drawn once and kept until a parameter
        changes (an optimiser step, `load_state_dict`, a move to another device: each bumps
        the tensor's version or moves its storage): about 0.8M normal draws at K = 10, which
        took 8 of a single image's 11 ms when drawn at every call. Drawn without autograd
        (inference only) and outside inference mode, so that ODIN's input gradient can
        still flow through them.
        """
        key = (k, self.seed, tuple((p.device, p.data_ptr(), p._version) for p in self.parameters()))
        if self._draws is None or self._draws[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                draws = [layer.draw(k, call_generator(self.seed, i)) for i, layer in enumerate(self._layers())]
            self._draws = (key, draws)
        return self._draws[1]

    def _drawn_features(self, x: torch.Tensor, draws: list[tuple[torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
        # [B, C, H, W] -> [K, B, D]; the first convolution sees the same input for every draw.
        h: torch.Tensor = x
        for block, (weight, bias) in zip(self.conv, draws[: len(self.conv)], strict=True):
            h = block[0].forward_drawn(h, weight, bias)  # [K, B, out, H, W]
            h = block[1:](h.flatten(0, 1)).unflatten(0, h.shape[:2])  # BatchNorm, ReLU, pool
        fc1_weight, fc1_bias = draws[len(self.conv)]
        return torch.relu(self.fc1.forward_drawn(h.flatten(2), fc1_weight, fc1_bias))

    def head_samples(self, feats: torch.Tensor) -> torch.Tensor:
        # [K, B, D] -> [K, B, C]. Training: fresh noise per row. Inference: fc2's k draws.
        if self.training:
            return self.fc2(nn.functional.dropout(feats, self.dropout, self.training))
        weight, bias = self.draw_weights(feats.shape[0])[-1]
        return self.fc2.forward_drawn(feats, weight, bias)

    def sample_logits(self, x: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """Logit samples ``[K, B, C]``; `num_samples` overrides K (training uses 1)."""
        return self.head_samples(self.features(x, num_samples))


@torch.no_grad()
def init_from_network(model: VariationalCNN, net: nn.Module) -> VariationalCNN:
    """Set every posterior mean to a trained `SmallCNN`'s weight, and copy its BatchNorm.

    MOPED (Krishnan et al., AAAI 2020): starting the ELBO from the maximum-likelihood
    weights instead of a random initialisation reaches the same accuracy in a fraction
    of the epochs. The posterior standard deviations keep their small initial value, so
    the ELBO, not the copy, decides how uncertain each weight is. `net` must have the
    same widths and hidden size (the layers' shapes are checked by `copy_`).
    """
    pairs = [(model.fc1, net.fc1), (model.fc2, net.fc2)]
    for v, d in zip(model.conv, net.conv, strict=True):  # blocks: conv, BatchNorm, ReLU, pool
        pairs.append((v[0], d[0]))
        v[1].load_state_dict(d[1].state_dict())
    for var, det in pairs:
        var.weight_mu.copy_(det.weight)
        if var.bias_mu is not None:
            var.bias_mu.copy_(det.bias)
    return model


def variational_cnn(
    prior: dict[str, Any] | None = None, num_samples: int = 10, seed: int | None = None, **arch_params: Any
) -> VariationalCNN:
    """Build the (training-time and serving) variational CNN; `prior` is `build_prior`'s JSON form.
    10 samples by default, not MC dropout's 20: each of its samples runs the whole network
    (every layer's weights are sampled), so 10 keep an answer within the latency budget."""
    return VariationalCNN(**arch_params, prior=build_prior(prior), num_samples=num_samples, seed=seed)


def elbo_loss(logits: torch.Tensor, labels: torch.Tensor, kl: torch.Tensor, dataset_size: int) -> torch.Tensor:
    """Negative ELBO per training example: ``NLL + KL / N``; logits ``[S, B, C]`` or ``[B, C]``, labels ``[B]``.

    The ELBO over the whole data set is ``sum_n E_q[log p(y_n | x_n, w)] - KL(q || p)``.
    A minibatch estimate divided by N (the data set size) is the mean per-example NLL
    of the batch plus ``KL / N``: the KL is paid once per epoch, spread over the
    batches (Blundell et al.'s uniform weighting, pi_i = 1/M, M batches, then divided
    by the batch size). Dividing KL by the batch size instead would over-regularise
    by N/B. The expected log-likelihood is the mean over the S samples of each
    sample's NLL (not the NLL of the averaged prediction, which would be a
    different, non-ELBO objective).
    """
    if logits.dim() == 2:
        logits = logits.unsqueeze(0)
    s, b, c = logits.shape
    nll = nn.functional.cross_entropy(logits.reshape(s * b, c), labels.repeat(s))
    return nll + kl / dataset_size


def build_variational(arch: str, arch_params: dict[str, Any], method_params: dict[str, Any]) -> UncertaintyModel:
    """METHODS builder: an untrained variational CNN with the manifest's prior and K."""
    if arch != "small_cnn":
        raise KeyError(f"the variational CNN mirrors 'small_cnn' only, not {arch!r}")
    return variational_cnn(**method_params, **arch_params)
