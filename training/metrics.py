"""Metrics with the papers' definitions; AUROC / AP / ECE come from well-kept libraries.

Misclassification detection follows the ConfidNet paper (Corbière et al. 2019):
confidence = -score; correct predictions are the positive class for AUPR-Success,
AUROC and the FPR at 95% TPR; errors are the positive class for AUPR-Error.
OOD detection follows Hendrycks & Gimpel / Liang et al.: in-distribution is positive.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import bootstrap
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from torchmetrics.functional.classification import multiclass_calibration_error

ECE_BINS = 15


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probs.argmax(-1) == labels).float().mean())


def log_losses(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each image's negative log-likelihood ``[N]`` of its true label, under ``probs [N, K]``."""
    return -torch.log(probs.gather(1, labels[:, None]).squeeze(1).clamp_min(1e-12))


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float(log_losses(probs, labels).mean())


def brier(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Brier's multi-class score: squared error to the one-hot label summed over classes
    (0 to 2), averaged over inputs; not divided by the number of classes."""
    onehot = torch.nn.functional.one_hot(labels, probs.shape[-1]).to(probs.dtype)
    return float(((probs - onehot) ** 2).sum(-1).mean())


def ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error, equal-width bins on max probability (Guo et al.).

    torchmetrics' bins are [lo, hi) with a confidence of exactly 1 in a bin of its own,
    where Guo et al.'s are (lo, hi]: on the shipped model 0.1994 % against 0.2006 %.
    """
    return float(multiclass_calibration_error(probs, labels, num_classes=probs.shape[-1], n_bins=bins, norm="l1"))


def fpr_at_tpr(pos_scores: np.ndarray, neg_scores: np.ndarray, tpr: float = 0.95) -> float:
    """FPR at the first threshold reaching `tpr`; scores: higher = more positive.

    Every threshold is kept (`drop_intermediate=False`): with tied scores the curve steps
    diagonally, and the point that first reaches `tpr` may be one sklearn drops as collinear.
    """
    y = np.r_[np.ones(len(pos_scores)), np.zeros(len(neg_scores))]
    fpr, tprs, _ = roc_curve(y, np.r_[pos_scores, neg_scores], drop_intermediate=False)
    return float(fpr[np.searchsorted(tprs, tpr, side="left")])


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the risk-coverage curve (Geifman & El-Yaniv 2017), lower is better."""
    order = np.argsort(-confidence, kind="stable")
    errors = 1.0 - correct[order].astype(np.float64)
    risks = np.cumsum(errors) / np.arange(1, len(errors) + 1)
    return float(risks.mean())


def misclassification(score: torch.Tensor, correct: torch.Tensor) -> dict[str, float]:
    """ConfidNet-paper metrics for a failure score (higher = more likely wrong), in %."""
    conf = (-score).double().numpy()
    ok = correct.bool().numpy()
    if ok.all() or not ok.any():
        nan = float("nan")
        return {"fpr95": nan, "aupr_error": nan, "aupr_success": nan, "auroc": nan, "aurc": aurc(conf, ok)}
    return {
        "fpr95": 100 * fpr_at_tpr(conf[ok], conf[~ok]),
        "aupr_error": 100 * average_precision_score(~ok, -conf),
        "aupr_success": 100 * average_precision_score(ok, conf),
        "auroc": 100 * roc_auc_score(ok, conf),
        "aurc": 1000 * aurc(conf, ok),
    }


def ood_detection(id_score: torch.Tensor, ood_score: torch.Tensor) -> dict[str, float]:
    """OOD metrics in %; scores higher = more OOD, in-distribution is the positive class."""
    pos, neg = (-id_score).double().numpy(), (-ood_score).double().numpy()
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    s = np.r_[pos, neg]
    fpr, tpr, _ = roc_curve(y, s)
    # Detection error: min over thresholds of 0.5 (1 - TPR) + 0.5 FPR (Liang et al.).
    det_err = float(np.min(0.5 * (1 - tpr) + 0.5 * fpr))
    return {
        "auroc": 100 * roc_auc_score(y, s),
        "fpr95": 100 * fpr_at_tpr(pos, neg),
        "detection_error": 100 * det_err,
        "aupr_in": 100 * average_precision_score(y, s),
        "aupr_out": 100 * average_precision_score(1 - y, -s),
    }


def auroc_gain(
    id_a: torch.Tensor, ood_a: torch.Tensor, id_b: torch.Tensor, ood_b: torch.Tensor, n_resamples: int = 1000, seed: int = 0
) -> dict[str, float]:
    """AUROC of score a minus AUROC of score b (points, OOD scores as in `ood_detection`), with a 95 % CI.

    Both scores rank the same images, so their AUROCs are strongly correlated: each
    bootstrap resample draws one set of in-distribution and one set of OOD images and
    scores both on it (paired), ID and OOD resampled separately (stratified), percentile
    interval (`scipy.stats.bootstrap`). A difference whose interval spans 0 is not
    evidence that either score is better.
    """
    pa, na = (-id_a).double().numpy(), (-ood_a).double().numpy()
    pb, nb = (-id_b).double().numpy(), (-ood_b).double().numpy()

    def gain(i: np.ndarray, j: np.ndarray) -> float:
        y = np.r_[np.ones(len(i)), np.zeros(len(j))]
        return 100 * (roc_auc_score(y, np.r_[pa[i], na[j]]) - roc_auc_score(y, np.r_[pb[i], nb[j]]))

    idx = (np.arange(len(pa)), np.arange(len(na)))
    res = bootstrap(idx, gain, n_resamples=n_resamples, vectorized=False, method="percentile", rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return {"delta_auroc": gain(*idx), "ci95_low": float(ci.low), "ci95_high": float(ci.high)}


def classification(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    return {
        "accuracy": 100 * accuracy(probs, labels),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
        "ece": 100 * ece(probs, labels),
    }


def prediction_sets(sets: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Conformal sets (boolean ``[N, K]``) against the true labels: the share covering the label
    (the guarantee is >= 1 - alpha), the mean size, and the share of single-class sets (%)."""
    size = sets.sum(-1).double()
    covered = sets.gather(-1, labels[:, None]).squeeze(-1)
    return {
        "coverage": 100 * float(covered.double().mean()),
        "mean_size": float(size.mean()),
        "singletons": 100 * float((size == 1).double().mean()),
    }
