"""Training ConfidNet (Corbière et al. 2019) on a frozen classifier.

The head regresses the true-class probability (TCP) with MSE on the training set,
the classifier frozen; the epoch kept is the one with the best validation AUPR-Error
(the paper's selection criterion). Features are computed once and cached: the head
is tiny, so each epoch over cached features costs a fraction of one classifier pass.
A second, randomly shifted copy of the training set adds the harder examples a
near-perfect classifier otherwise rarely gets wrong on its own training data.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from sklearn.metrics import average_precision_score

from models.base import UncertaintyModel
from models.confidnet import confidnet_loss, confidnet_training_pairs
from models.scorers.confidnet import ConfidNetScorer
from training.data import Split, Splits
from training.loop import TrainConfig, features_and_logits, random_shift

HEAD_EPOCHS = 15
HEAD_LR = 1e-3
HEAD_BATCH = 256


def _shifted(data: Split, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([random_shift(data.x[i : i + 256], 2, gen) for i in range(0, len(data), 256)])


def train_confidnet(model: UncertaintyModel, splits: Splits, cfg: TrainConfig) -> tuple[ConfidNetScorer, dict[str, Any]]:
    """Returns the fitted scorer and a report (validation AUPR-Error per epoch, best epoch)."""
    torch.manual_seed(cfg.seed)
    model.eval()
    parts = [features_and_logits(model, splits.train.x), features_and_logits(model, _shifted(splits.train, cfg.seed))]
    pairs = [confidnet_training_pairs(f, lg, splits.train.y) for f, lg in parts]
    inputs = torch.cat([p[0] for p in pairs])
    targets = torch.cat([p[1] for p in pairs])
    val_f, val_l = features_and_logits(model, splits.val.x)
    val_err = (torch.softmax(val_l, -1).mean(0).argmax(-1) != splits.val.y).numpy()

    scorer = ConfidNetScorer(in_features=inputs.shape[-1])
    opt = torch.optim.Adam(scorer.parameters(), lr=HEAD_LR)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[float] = []
    best_state, best = copy.deepcopy(scorer.state_dict()), -1.0
    for _ in range(HEAD_EPOCHS):
        scorer.train()
        perm = torch.randperm(len(inputs), generator=gen)
        for i in range(0, len(perm), HEAD_BATCH):
            idx = perm[i : i + HEAD_BATCH]
            loss = confidnet_loss(scorer.head(inputs[idx]), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        scorer.eval()
        with torch.no_grad():
            score = (1.0 - scorer.head(val_f).mean(0)).numpy()
        aupr = float(average_precision_score(val_err, score)) if val_err.any() else 0.0
        history.append(round(100 * aupr, 3))
        if aupr > best:
            best, best_state = aupr, copy.deepcopy(scorer.state_dict())
    # A head that never beats chance (AUPR-Error at the error base rate) has collapsed to a
    # constant; served, it would make every decision the same. Refuse it loudly.
    base_rate = float(val_err.mean())
    if best <= base_rate + 0.01:
        raise RuntimeError(f"ConfidNet did not learn (best validation AUPR-Error {best:.4f}, chance {base_rate:.4f}); use --failure-scorer msp")
    scorer.load_state_dict(best_state)
    scorer.eval()
    return scorer, {"val_aupr_error_per_epoch": history, "best_epoch": history.index(max(history)) + 1}
