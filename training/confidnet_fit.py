"""Training ConfidNet (Corbière et al. 2019) on a frozen classifier.

The head regresses the true-class probability (TCP) with MSE on the training set,
the classifier frozen; the epoch kept is the one with the best validation AUPR-Error
(the paper's selection criterion). Features are computed once and cached: the head
is tiny, so each epoch over cached features costs a fraction of one classifier pass.
A near-perfect classifier is almost never wrong on its own training data, so the
plain training set teaches the head little about failures. As in the authors' code
(valeoai/ConfidNet, `SelfConfidLearner`: the classifier stays in train mode with only
BatchNorm frozen), every pass keeps the classifier's own training dropout on: the
perturbed features' TCP drops, often below the argmax, which gives the head many
realistic near-failures. The passes come in two recipes (`PASSES`, the training option
`--confidnet-passes`):
- `shift` (the default): half of the passes also shift the digits by up to 2 pixels;
- `distort`: every pass distorts each digit by its own random affine map
  (`training.distort`: up to 10 degrees of rotation, 5 of shear, 10 % of scale and
  2 pixels of shift), which is how many misread test digits look.

Measured test AUPR-Error of the head, against MCP on the same network:
- seeds 7 and 8 (outside the zoo): `shift` 35.92 and 33.73, `distort` 39.44 and 40.70,
  MCP 45.14 and 46.73; half of the passes distorted: 39.48, 39.41; stronger distortions
  (20 degrees, 15 %, 10 degrees of shear, 3 pixels): 37.05, 39.35; `distort` with the
  logits beside the features as the head's input: 33.52, 37.70;
- zoo seeds 0, 1, 2, deterministic networks: `shift` 41.31, 38.88, 37.40; `distort`
  44.09, 33.76, 40.95; MCP 43.65, 35.89, 46.43 (FPR95 of the heads: 4.62 / 4.62,
  3.33 / 5.00, 3.28 / 3.28);
- zoo seed 0, ensemble: `shift` 34.65, `distort` 34.79, MCP 47.77 (FPR95 1.89, 3.77,
  MCP 1.89). These ensemble heads learnt the predictive's TCP from every member's features;
  each member's row now gets its own TCP (`models.confidnet.confidnet_training_pairs`).
`distort` gains 2.4 points on average over the five single networks, with one loss of 5.1,
and nothing on the ensemble: too weak and noisy to replace `shift`, with which
docs/results.md was made. Neither recipe reliably beats MCP; neither did a head that
learns a correction on top of MCP's logit (an earlier trial), nor one that regresses the
normalised target TCP / MCP of the authors' journal version (Corbière et al., TPAMI 2022):
on a seed-0 network (2026-11-29), test AUPR-Error 29.0 against TCP's 43.7 and MCP's 55.6.
Nor did targets from the served last layer on the perturbed features (dropout only up to
the features, so the head sees everything its target depends on), on the zoo's seed-0
networks (2026-11-29): test AUPR-Error 48.9 against 43.7 on the deterministic network but
27.1 against 38.3 on the ensemble, whose validation split said the opposite (33.5 against
29.9). With 25-65 errors per split such gaps are noise; the authors' recipe stays.
Nor did out-of-fold targets (2026-11-29, seed-0 network): two networks, each trained on
one half of the training set, give every training image the TCP of the one that never
saw it (489 realistic errors instead of near-certain successes); the head learns them
from the served network's clean features. Test / cal AUPR-Error: 34.4 / 28.2 on the
images as they are, 35.7 / 29.7 with three shifted passes, 29.8 / 35.5 with the fold
networks' dropout on, against 41.3 / 37.1 for the recipe above and 43.7 / 37.5 for MCP:
the fold networks' own mistakes are largely not the served network's, so the targets
mostly teach noise (and the recipe would double the training time).
Nor, on the zoo's ensembles (2026-11-29, same features and epoch choice on validation),
did a head trained longer or one head per member. The ensemble's head kept its last epoch
on seeds 0 and 1 (validation AUPR-Error still rising at epoch 15), but at 45 epochs test
AUPR-Error went from 35.8 to 39.5 on seed 0 (MCP 47.8) and from 30.2 to 25.8 on seed 1
(MCP 28.5; validation peaked at epoch 14 in that run): the climb is noise, not
under-training. Five heads, each learning its own member's TCP from 40,000 of the 200,000
rows per epoch and averaged, reached 38.6 on seed 0 (FPR95 3.8, against 1.9 for the
45-epoch shared head): one head per member wins nothing back from the shared head's mix
of the members' unaligned feature spaces.
Two passes instead of four (`none` and `shift`, 15 epochs) would cut the ensemble head's
5.5 minutes by 2.4, which issue 3's 30-minute budget could use, but its test / cal
AUPR-Error went from 35.8 / 33.1 to 35.5 / 36.2 on seed 0 and from 30.2 / 36.3 to
26.1 / 29.6 on seed 1 (MCP 28.5 / 34.2): not kept without a 3-seed run.
Nor did adversarial passes (2026-11-30, the zoo's deterministic networks of 03:31 UTC): each
digit moved by one FGSM step of its own random size up to eps against its label, so that its
TCP drops the way a digit near the decision boundary does. Test AUPR-Error, seeds 0 / 1 / 2:
passes none, shift, FGSM with dropout, FGSM without, eps 0.1: 45.5 / 33.8 / 37.5 (38.9);
eps 0.2: 44.6 / 34.5 / 36.1 (38.4); four FGSM passes at eps 0.2: 36.4 / 21.2 / 31.1 (29.6);
against the `shift` recipe's 43.7 / 31.8 / 42.8 (39.4) and MCP's 55.6 / 30.4 / 47.3 (44.4).
The epoch choice is not what loses: on the same three networks, the `shift` head's best epoch
picked on test itself (an oracle no recipe may use) reaches 43.8 / 33.0 / 44.2 (40.3), still
under MCP's 44.4; validation AUPR-Error picked epochs worth 39.4.
Nor did other losses (2026-12-01, zoo seeds 0 and 10, the same passes; test AUPR-Error seed 0 /
10, MCP 55.5 / 42.7, the recipe 39.4 / 40.3): a pairwise ranking loss 29.8 / 23.5, cross-entropy
on the pass's error 35.8 (seed 0), MCP's logit plus a head started at 0 with cross-entropy
51.8 / 35.0 or the ranking loss 54.9 / 32.5 (it falls from MCP's figure from the first epoch),
clean features regressing the image's mean TCP over the passes 31.8 (seed 0), the recipe plus a
pass of blended digit pairs (mixup, 50-90 % of the labelled digit) 30.6 (seed 0). docs/experiments.md
has the table. Nor did every layer's space-averaged features beside the penultimate ones
(2026-12-01, seed 0): 38.2, 37.7 standardised, against 40.4 for the penultimate alone.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from torch import nn

from models.base import UncertaintyModel
from models.confidnet import confidnet_loss, confidnet_training_pairs
from models.scorers.base import ScoreInput
from models.scorers.confidnet import ConfidNetScorer
from training.data import Split, Splits
from training.distort import random_affine
from training.loop import TrainConfig, features_and_logits, normalise, random_shift

HEAD_EPOCHS = 15
HEAD_LR = 1e-3
HEAD_BATCH = 256
#: Rows drawn (without replacement) for each epoch. An ensemble gives M feature rows per
#: image and pass (1M rows for 5 members x 4 passes): bounding the rows per epoch keeps its
#: head as cheap to train as the single network's, while each epoch draws different rows.
ROWS_PER_EPOCH = 200_000
#: Passes over the training set the head learns from, by recipe: (how the digits are
#: perturbed: none, shift or distort; classifier dropout on). Each costs one inference pass.
PASSES: dict[str, tuple[tuple[str, bool], ...]] = {
    "shift": (("none", True), ("shift", True), ("none", True), ("shift", True)),
    "distort": (("distort", True),) * 4,
}
#: `shift`'s largest offset in pixels (one random offset per chunk of digits).
SHIFT = 2


def perturbed(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """Digits ``[B, C, H, W]`` as a pass of kind `kind` shows them to the classifier."""
    if kind == "none":
        return x
    if kind == "shift":
        return random_shift(x, SHIFT, gen)
    if kind == "distort":
        return random_affine(x, gen)
    raise ValueError(f"unknown perturbation {kind!r}; known: none, shift, distort")


def _perturbed_split(data: Split, kind: str, seed: int) -> torch.Tensor:
    if kind == "none":
        return data.x  # no copy of the training set
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([perturbed(data.x[i : i + 256], kind, gen) for i in range(0, len(data), 256)])


@dataclass(frozen=True)
class Validation:
    """The validation split scored once by the frozen classifier, for choosing among heads."""

    inp: ScoreInput
    #: ``[N]`` bool: the classifier's (sample-averaged) prediction is wrong.
    errors: np.ndarray

    @staticmethod
    def of(model: UncertaintyModel, val: Split) -> Validation:
        feats, logits = features_and_logits(model, val.x)
        errors = (torch.softmax(logits, -1).mean(0).argmax(-1) != val.y).numpy()
        return Validation(ScoreInput(model, normalise(val.x), logits, feats, 1.0), errors)

    def aupr_error(self, scorer: ConfidNetScorer) -> float:
        """AUPR-Error (0-1, errors positive) of `scorer` as served: on the classifier's
        features, or on its own encoder's after fine-tuning; 0 without any error."""
        if not self.errors.any():
            return 0.0
        with torch.no_grad():
            return float(average_precision_score(self.errors, scorer.score(self.inp).numpy()))


@contextmanager
def classifier_dropout(model: UncertaintyModel, on: bool = True) -> Iterator[None]:
    """The classifier with its training dropout on (or off) and its BatchNorm in eval mode; eval mode after."""
    model.train(on)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()  # running statistics stay those the classifier is served with
    try:
        yield
    finally:
        model.eval()


def _training_pass(model: UncertaintyModel, data: Split, kind: str, dropout: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(head inputs, TCP targets) of one pass; with `dropout`, the classifier's training dropout is on."""
    x = _perturbed_split(data, kind, seed)
    with classifier_dropout(model, dropout):
        feats, logits = features_and_logits(model, x)  # no_grad inside
    return confidnet_training_pairs(feats, logits, data.y)


def train_confidnet(model: UncertaintyModel, splits: Splits, cfg: TrainConfig, passes: str = "shift") -> tuple[ConfidNetScorer, dict[str, Any]]:
    """Returns the fitted scorer and a report (validation AUPR-Error per epoch, best epoch, the passes' recipe)."""
    if passes not in PASSES:
        raise ValueError(f"unknown ConfidNet passes {passes!r}; known: {sorted(PASSES)}")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    pairs = [_training_pass(model, splits.train, kind, drop, cfg.seed + i) for i, (kind, drop) in enumerate(PASSES[passes])]
    inputs = torch.cat([p[0] for p in pairs])
    targets = torch.cat([p[1] for p in pairs])
    val = Validation.of(model, splits.val)

    scorer = ConfidNetScorer(in_features=inputs.shape[-1])
    opt = torch.optim.Adam(scorer.parameters(), lr=HEAD_LR)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[float] = []
    best_state, best = copy.deepcopy(scorer.state_dict()), -1.0
    for _ in range(HEAD_EPOCHS):
        scorer.train()
        perm = torch.randperm(len(inputs), generator=gen)[:ROWS_PER_EPOCH]
        for i in range(0, len(perm), HEAD_BATCH):
            idx = perm[i : i + HEAD_BATCH]
            loss = confidnet_loss(scorer.head(inputs[idx]), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        scorer.eval()
        aupr = val.aupr_error(scorer)
        history.append(round(100 * aupr, 3))
        if aupr > best:
            best, best_state = aupr, copy.deepcopy(scorer.state_dict())
    # A head that never beats chance (AUPR-Error at the error base rate) has collapsed to a
    # constant; served, it would make every decision the same. Refuse it loudly.
    base_rate = float(val.errors.mean())
    if best <= base_rate + 0.01:
        raise RuntimeError(f"ConfidNet did not learn (best validation AUPR-Error {best:.4f}, chance {base_rate:.4f}); use --failure-scorer msp")
    scorer.load_state_dict(best_state)
    scorer.eval()
    report = {"passes": passes, "val_aupr_error_per_epoch": history, "best_epoch": history.index(max(history)) + 1}
    return scorer, {**report, "seconds": round(time.perf_counter() - started, 1)}
