"""One generic training loop: minibatches, light augmentation, OneCycle, progress bar.

Every method supplies only its loss; the loop shows throughput and ETA (tqdm), so a
user can see the 2-core budget being spent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from models.base import UncertaintyModel
from training.data import Split

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass
class TrainConfig:
    epochs: int = 6
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    #: Random translation of up to this many pixels: cheap, and worth ~0.1-0.2% on MNIST.
    shift: int = 2
    progress: bool = True


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - MNIST_MEAN) / MNIST_STD


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate the whole batch by one random (dy, dx); zero-pad, keep size."""
    if max_shift == 0:
        return x
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
    padded = nn.functional.pad(x, (max_shift,) * 4)
    h, w = x.shape[-2:]
    return padded[..., max_shift + dy : max_shift + dy + h, max_shift + dx : max_shift + dx + w]


def train(module: nn.Module, params: list[nn.Parameter], loss_fn: LossFn, data: Split, cfg: TrainConfig, desc: str) -> None:
    """Minimise `loss_fn(normalised_x, y)` over `data`; `module` is set to train mode."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, (len(data) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    module.train()
    bar = tqdm(total=cfg.epochs * len(data), desc=desc, unit="img", unit_scale=True, mininterval=1.0, disable=not cfg.progress)
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(data), generator=gen)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            x = normalise(random_shift(data.x[idx], cfg.shift, gen))
            loss = loss_fn(x, data.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running = 0.9 * running + 0.1 * loss.item() if i else loss.item()
            bar.update(len(idx))
            if i % 50 == 0:
                bar.set_postfix(epoch=epoch + 1, loss=f"{running:.4f}", refresh=False)
    bar.close()
    module.eval()


@torch.no_grad()
def predict_logits(sample_logits: Callable[[torch.Tensor], torch.Tensor], data: Split, batch_size: int = 1000) -> torch.Tensor:
    """Logit samples ``[S, N, K]`` for a whole split, in eval mode, batch by batch."""
    outs = [sample_logits(normalise(data.x[i : i + batch_size])) for i in range(0, len(data), batch_size)]
    return torch.cat(outs, dim=1)


def served_temperature(model: UncertaintyModel, val: Split) -> float:
    """The temperature `finalize` fits on `val` and the bundle serves: choices made before it
    (failure and OOD scorers) score at it, so they rank what will be served."""
    from models.calibration import fit_temperature

    return fit_temperature(predict_logits(model.sample_logits, val), val.y)


@torch.no_grad()
def features_and_logits(model: UncertaintyModel, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[S_f, N, D]`` and logit samples ``[S, N, K]`` of pixels `x` ``[N, C, H, W]``, batch by batch.

    One forward per batch serves both: ConfidNet, Mahalanobis and the evaluation need the
    features and the logits of the same pass.
    """
    fs, ls = [], []
    for i in range(0, len(x), batch_size):
        f = model.features(normalise(x[i : i + batch_size]))
        fs.append(f)
        ls.append(model.head_samples(f))
    return torch.cat(fs, 1), torch.cat(ls, 1)
