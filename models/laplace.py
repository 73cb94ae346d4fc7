"""Last-layer Laplace approximation (MacKay 1992; Daxberger et al. 2021, "Laplace Redux").

After ordinary (MAP) training, the last layer's parameters theta = [W | b] of fc2 get
a Gaussian posterior ``N(theta_MAP, (H + lambda I)^-1)``: H is the generalised
Gauss-Newton (GGN) matrix of the training NLL, lambda the prior precision. For a
linear last layer under softmax cross-entropy the GGN *is* the Hessian (the logits are
linear in theta), so nothing is approximated beyond the Laplace step itself.

Full GGN rather than KFAC: P = K(D+1) = 1290 parameters for SmallCNN, so H is
1290x1290 (6.6 MB in float32): exact, one Cholesky to factor, and still small in the
bundle. KFAC would save memory we do not need at the cost of an approximation.

lambda maximises the Laplace log marginal likelihood over a grid (eigenvalues of H
make each grid point O(P)). The predictive is Monte Carlo: S weight samples drawn
once per batch and applied to every row in one einsum, so the mutual information
(the epistemic part) exists, unlike with the probit approximation.

Parameters are flattened row-major: index ``k * (D + 1) + j`` is W[k, j] (j = D: b[k]).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from models.architectures import SmallCNN, build_architecture
from models.base import UncertaintyModel
from models.sampling import call_generator, randn


def last_layer_ggn(feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """GGN ``sum_n (diag(p_n) - p_n p_n^T) kron (phi_n phi_n^T)``, float64 ``[P, P]``.

    feats ``[N, D]`` are fc2's inputs, probs ``[N, K]`` the softmax; phi_n = [feats_n, 1].
    """
    phi = torch.cat([feats, feats.new_ones(feats.shape[0], 1)], dim=1).double()  # [N, D+1]
    p = probs.double()
    n = p.shape[0]
    blocks = torch.einsum("nk,ni,nj->kij", p, phi, phi)  # the diag(p) part: K blocks [D+1, D+1]
    g = (p.unsqueeze(2) * phi.unsqueeze(1)).reshape(n, -1)  # rows p_n kron phi_n, [N, P]
    return torch.block_diag(*blocks) - g.T @ g


def log_marginal_likelihood(
    ggn_eigvals: torch.Tensor, map_sq_norm: float, log_lik: float, prior_precision: torch.Tensor
) -> torch.Tensor:
    """Laplace evidence ``log p(D | lambda)`` for each lambda in `prior_precision` ``[G]`` -> ``[G]``.

    log p(D|theta*) + log N(theta*; 0, I/lambda) + (P/2) log 2 pi - (1/2) log det(H + lambda I)
    = log_lik - lambda |theta*|^2 / 2 + (P/2) log lambda - (1/2) sum_i log(e_i + lambda).
    """
    lam = prior_precision.double().unsqueeze(1)  # [G, 1]
    p = ggn_eigvals.numel()
    logdet = torch.log(ggn_eigvals.double().unsqueeze(0) + lam).sum(1)
    return log_lik - 0.5 * lam[:, 0] * map_sq_norm + 0.5 * p * torch.log(lam[:, 0]) - 0.5 * logdet


class LastLayerLaplace(UncertaintyModel):
    """A SmallCNN with a Gaussian posterior over fc2. `features` ``[1, B, D]`` -> samples ``[S, B, K]``.

    Buffers (saved in the bundle): `posterior_scale` A ``[P, P]`` with ``A A^T`` the
    posterior covariance (A = L^-T for the Cholesky factor L of the precision), and
    `prior_precision`. The MAP weights are fc2's own parameters.
    """

    method = "laplace"

    def __init__(self, net: SmallCNN, num_samples: int = 20, seed: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.num_samples = int(num_samples)
        self.seed = seed
        self.feature_dim = net.hidden_dim
        #: Set by `fit_last_layer_laplace`: the lambda grid, its log evidences, the choice.
        self.fit_report: dict[str, Any] = {}
        p = net.num_classes * (net.hidden_dim + 1)
        # Zero until fitted: an unfitted model samples the MAP only (MI = 0), never noise.
        self.register_buffer("posterior_scale", torch.zeros(p, p))
        self.register_buffer("prior_precision", torch.zeros(()))

    def method_params(self) -> dict[str, Any]:
        """JSON-able hyperparameters for the manifest's `method_params`."""
        return {"num_samples": self.num_samples, "seed": self.seed}

    def map_params(self) -> torch.Tensor:
        """theta_MAP ``[K, D+1]`` = [W | b] of fc2."""
        return torch.cat([self.net.fc2.weight, self.net.fc2.bias.unsqueeze(1)], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] -> [1, B, D]
        return self.net.forward_features(x).unsqueeze(0)

    def head_samples(self, feats: torch.Tensor) -> torch.Tensor:
        # [1, B, D] -> [S, B, K]; theta_s = theta* + A z_s, z_s ~ N(0, I), shared by the batch
        # and drawn from the bundle's seed at every call: the same S weights for every input.
        theta = self.map_params()
        z = randn((theta.numel(), self.num_samples), theta, call_generator(self.seed))  # [P, S]
        w = theta + (self.posterior_scale @ z).T.reshape(self.num_samples, *theta.shape)  # [S, K, D+1]
        return torch.einsum("bd,skd->sbk", feats[0], w[..., :-1]) + w[..., -1].unsqueeze(1)


def _batches(
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | tuple[torch.Tensor, torch.Tensor], chunk: int
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        return [(x[i : i + chunk], y[i : i + chunk]) for i in range(0, len(x), chunk)]
    return data  # type: ignore[return-value]


def fit_last_layer_laplace(
    net: SmallCNN,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | tuple[torch.Tensor, torch.Tensor],
    prior_precisions: Sequence[float] | None = None,
    num_samples: int = 20,
    seed: int | None = None,
    chunk: int = 512,
) -> LastLayerLaplace:
    """Fit the last-layer posterior of a trained `net` on its training data (x ``[N,C,H,W]``, y ``[N]``).

    `data` is a DataLoader of (x, y) batches or one (x, y) pair of tensors. The GGN is
    summed over all of it (so N matters: use the full training set). Returns the
    serving model; its `fit_report` holds the lambda grid and log evidences.
    """
    model = LastLayerLaplace(net, num_samples, seed)
    device = net.fc2.weight.device
    p = model.posterior_scale.shape[0]
    ggn = torch.zeros(p, p, dtype=torch.float64, device=device)
    log_lik = 0.0
    was_training = net.training
    net.eval()  # BatchNorm running statistics, as served; restored below.
    with torch.no_grad():
        for x, y in _batches(data, chunk):
            feats = net.forward_features(x.to(device))
            logits = net.forward_head(feats)
            log_lik -= float(nn.functional.cross_entropy(logits, y.to(device), reduction="sum"))
            ggn += last_layer_ggn(feats, torch.softmax(logits, dim=-1))
        net.train(was_training)
        grid = torch.tensor(prior_precisions or torch.logspace(-4, 4, 41).tolist(), dtype=torch.float64)
        theta = model.map_params().double().flatten()
        evidence = log_marginal_likelihood(
            torch.linalg.eigvalsh(ggn).clamp_min(0.0), float(theta @ theta), log_lik, grid
        )
        best = int(evidence.argmax())
        if len(grid) > 1 and best in (0, len(grid) - 1):
            warnings.warn(f"prior precision {float(grid[best]):g} is at the edge of the grid; widen it", stacklevel=2)
        lam = float(grid[best])
        chol = torch.linalg.cholesky(ggn + lam * torch.eye(p, dtype=torch.float64, device=device))
        # A = L^-T satisfies A A^T = L^-T L^-1 = (L L^T)^-1, the covariance.
        eye = torch.eye(p, dtype=torch.float64, device=device)
        scale = torch.linalg.solve_triangular(chol, eye, upper=False).T
        model.posterior_scale.copy_(scale.float())
        model.prior_precision.fill_(lam)
    model.fit_report = {"prior_precisions": grid.tolist(), "log_evidence": evidence.tolist(), "chosen": lam}
    return model


def build_laplace(arch: str, arch_params: dict[str, Any], method_params: dict[str, Any]) -> UncertaintyModel:
    """METHODS builder: an unfitted last-layer Laplace model to load a bundle's buffers into."""
    return LastLayerLaplace(build_architecture(arch, **arch_params), **method_params)  # type: ignore[arg-type]
