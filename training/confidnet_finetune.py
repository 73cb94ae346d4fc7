"""ConfidNet's second phase (Corbière et al. 2019, Sec. 3.3): fine-tune a copy of the encoder.

After the head has learnt on frozen features (`training.confidnet_fit`), the paper trains
the encoder (here the conv blocks and the hidden layer) jointly with the head, on the same
MSE-to-TCP loss. The encoder is duplicated, so the classifier that makes the prediction,
and with it every TCP target, the temperature, the thresholds and the conformal set,
stays exactly the frozen network; only the confidence branch moves. As in the paper,
dropout is off in the copy (eval mode, which also keeps its BatchNorm statistics) and
the learning rate is small. The targets are made as in the first phase: the frozen
classifier with its training dropout on, each batch perturbed like a pass of the same
recipe (`training.confidnet_fit.PASSES`, taken in turn).

Selection, the paper's criterion: validation AUPR-Error, measured `CHECKS_PER_EPOCH`
times per epoch. The phase-1 head is a candidate too, so this phase never returns a
scorer worse on validation than the one it was given.

Only a single network (`deterministic`): an ensemble would need one encoder copy per
member, M more forwards per request.

Measured on two seeds outside the zoo (7 and 8), `vigil train --method confidnet
--base-bundle DET --confidnet-finetune-epochs 2` then `vigil evaluate`, test AUPR-Error
of the head before -> after this phase: 35.92 -> 36.41 and 33.73 -> 29.73, with MCP at
45.10 and 46.44 (at lr 1e-3 instead of 1e-4, seed 8: 31.45), both phases with the
`shift` passes. With about 30 validation errors the selection is mostly noise, so the
phase is off by default (it is a training option, `--confidnet-finetune-epochs N`, and
costs about 25 s an epoch here).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from models.architectures import SmallCNN
from models.base import UncertaintyModel
from models.confidnet import confidnet_loss, tcp_targets
from models.deterministic import Deterministic
from models.scorers.confidnet import ConfidNetScorer
from training.confidnet_fit import PASSES, Validation, classifier_dropout, perturbed
from training.data import Splits
from training.loop import TrainConfig, normalise

FINETUNE_LR = 1e-4
FINETUNE_BATCH = 128
CHECKS_PER_EPOCH = 4


def finetune_confidnet(
    model: UncertaintyModel,
    scorer: ConfidNetScorer,
    splits: Splits,
    cfg: TrainConfig,
    epochs: int,
    arch_params: dict[str, Any],
    passes: str = "shift",
) -> tuple[ConfidNetScorer, dict[str, Any]]:
    """A scorer with its own fine-tuned encoder and head, and the report for the manifest."""
    if not isinstance(model, Deterministic) or not isinstance(model.net, SmallCNN):
        raise TypeError("ConfidNet fine-tuning needs a single SmallCNN (method deterministic or confidnet)")
    if epochs < 1:
        raise ValueError(f"fine-tuning epochs must be >= 1, got {epochs}")
    recipe = PASSES[passes]  # KeyError before any work for an unknown recipe
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    net = model.net
    tuned = ConfidNetScorer(scorer.in_features, scorer.hidden, encoder={"architecture": "small_cnn", "params": arch_params})
    tuned.head.load_state_dict(scorer.head.state_dict())
    tuned.encoder.load_state_dict(net.state_dict())
    tuned.eval()  # dropout off and BatchNorm statistics fixed in the copy, for the whole phase
    tuned.requires_grad_(True)
    # fc2 (the copy's classifier layer) is not on the confidence branch's path.
    params = [p for name, p in tuned.named_parameters() if not name.startswith("encoder.fc2.")]
    opt = torch.optim.Adam(params, lr=FINETUNE_LR)

    val = Validation.of(model, splits.val)
    best = val.aupr_error(tuned)
    history = [round(100 * best, 3)]  # check 0: the phase-1 head, unchanged
    best_state = copy.deepcopy(tuned.state_dict())

    train = splits.train
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = max(1, -(-len(train) // FINETUNE_BATCH))
    check_every = max(1, steps_per_epoch // CHECKS_PER_EPOCH)
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(len(train), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * FINETUNE_BATCH : (i + 1) * FINETUNE_BATCH]
            kind, dropout = recipe[step % len(recipe)]
            x = normalise(perturbed(train.x[idx], kind, gen))
            with torch.no_grad(), classifier_dropout(model, dropout):
                target = tcp_targets(model.sample_logits(x), train.y[idx])
            loss = confidnet_loss(tuned.head(tuned.encoder.forward_features(x)), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % check_every == 0 or i == steps_per_epoch - 1:
                aupr = val.aupr_error(tuned)
                history.append(round(100 * aupr, 3))
                if aupr > best:
                    best, best_state = aupr, copy.deepcopy(tuned.state_dict())
    tuned.load_state_dict(best_state)
    tuned.eval()
    tuned.requires_grad_(False)
    report = {
        "epochs": epochs,
        "lr": FINETUNE_LR,
        "passes": passes,
        "val_aupr_error_per_check": history,
        "best_check": history.index(max(history)),  # 0: the phase-1 head was kept
        "seconds": round(time.perf_counter() - started, 1),
    }
    return tuned, report
