"""Build and fit the OOD scorer a bundle will serve, from in-distribution data only.

- msp, energy, entropy, mutual_information: nothing to fit.
- odin: eps chosen on validation inputs by the Generalized-ODIN criterion (see
  `choose_odin_params`), T = 1000; eps is in pixel units (divided by the input std).
- mahalanobis: class means and tied covariance of the model's features on the training set.
"""

from __future__ import annotations

import torch

from models.base import UncertaintyModel
from models.scorers.base import Scorer
from models.scorers.mahalanobis import Mahalanobis
from models.scorers.odin import ODIN, choose_odin_params
from models.scorers.registry import build_scorer
from training.data import Splits
from training.loop import MNIST_STD, normalise

#: Fitting subsets: enough for stable statistics, cheap on 2 cores.
ODIN_FIT_SIZE = 2000
MAHALANOBIS_FIT_SIZE = 20_000


@torch.no_grad()
def _features(model: UncertaintyModel, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    return torch.cat([model.features(normalise(x[i : i + batch_size])) for i in range(0, len(x), batch_size)], dim=1)


def fit_ood_scorer(name: str, model: UncertaintyModel, splits: Splits) -> tuple[Scorer, dict[str, float]]:
    """Returns the fitted scorer and what was chosen, for the manifest's metrics."""
    model.eval()
    if name == "odin":
        x_val = normalise(splits.val.x[:ODIN_FIT_SIZE])
        t, eps, criterion = choose_odin_params(model, x_val, std=[MNIST_STD])
        return ODIN(temperature=t, eps=eps, std=[MNIST_STD]), {"odin_temperature": t, "odin_eps": eps, "odin_id_mean_max_softmax": criterion}
    if name == "mahalanobis":
        train = splits.train.head(MAHALANOBIS_FIT_SIZE)
        num_classes = int(splits.train.y.max()) + 1
        return Mahalanobis.from_features(_features(model, train.x), train.y, num_classes), {}
    return build_scorer(name), {}
