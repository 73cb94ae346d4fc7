"""Plain words for the model card: what each score measures, and each decision with its numbers."""

from __future__ import annotations

import math

from models.manifest import Manifest
from service.policy import MEANINGS

#: What a scorer's number measures; every score reads "higher = more likely the bad thing".
SCORER_MEANINGS: dict[str, str] = {
    "msp": "1 minus the highest calibrated class probability (Hendrycks & Gimpel 2017).",
    "entropy": "The entropy of the predicted class probabilities: spread-out probabilities score high.",
    "mutual_information": "How much the model's samples disagree with each other (epistemic uncertainty).",
    "energy": "The free energy of the logits, -logsumexp (Liu et al. 2020): low for inputs the classifier finds familiar.",
    "odin": "1 minus the highest class probability at temperature T after a small input step that raises it (Liang et al. 2018).",
    "mahalanobis": "How far the image's penultimate features are from the nearest class centre of the training images (Lee et al. 2018).",
    "mahalanobis_layers": (
        "How far the image's features are from the nearest class centre of the training images, measured at every "
        "layer and summed in standard units (Lee et al. 2018): low layers notice noise and blur, the last one objects "
        "that are not digits."
    ),
    "confidnet": "1 minus a learned estimate of the probability that the prediction is right (Corbiere et al. 2019).",
    "shift_consistency": "1 minus the predicted class's probability averaged over the image and its 8 one-pixel shifts: a reading that a nudge changes scores high.",
}


#: Plain words for each score, for the decision texts the demo page shows to an audience: the
#: scorer's name (what the manifest and the API say) follows in parentheses.
SCORER_WORDS: dict[str, str] = {
    "msp": "doubt",
    "entropy": "spread of the probabilities",
    "mutual_information": "disagreement between the model's samples",
    "energy": "unfamiliarity",
    "odin": "unfamiliarity",
    "mahalanobis": "distance from the training digits",
    "mahalanobis_layers": "distance from the training digits",
    "confidnet": "learned doubt",
    "shift_consistency": "doubt under a one-pixel nudge",
}


def scorer_words(name: str) -> str:
    """How a decision text names a score: "the distance from the training digits (mahalanobis_layers)"."""
    words = SCORER_WORDS.get(name)
    return f"the {words} ({name})" if words else f"the {name} score"


def scorer_meaning(name: str, role: str) -> str:
    """`role` is "failure" (higher = more likely wrong) or "ood" (higher = more likely out of distribution)."""
    what = "the prediction is wrong" if role == "failure" else "the image is unlike the training data"
    return f"{SCORER_MEANINGS.get(name, f'The {name} score.')} Higher means it is more likely that {what}."


def decision_texts(m: Manifest) -> dict[str, str]:
    """Each decision's meaning (service.policy.MEANINGS) followed by when this model takes it."""
    val = m.metrics.get("validation", {})
    passed = val.get("ood_pass_rate")
    risk, coverage = val.get("selective_risk"), val.get("coverage")
    failure, f_t, ood, o_t = scorer_words(m.failure.name), m.failure.threshold, scorer_words(m.ood.name), m.ood.threshold
    accept = f"Here: {ood} is at most {o_t:.4g} and {failure} at most {f_t:.4g}."
    if risk is not None and coverage is not None:
        accept += f" Of the validation digits, {coverage:.1%} scored at most {f_t:.4g} on {failure}, and {risk:.2%} of their predictions were wrong."
    reject = f"Here: {ood} is above {o_t:.4g}"
    reject += f", which only {1 - passed:.1%} of validation digits exceed." if passed is not None else "."
    return {
        "accept": f"{MEANINGS['accept']} {accept}",
        "abstain": f"{MEANINGS['abstain']} Here: the image passed the out-of-distribution check, with {ood} at most {o_t:.4g}, but {failure} is above {f_t:.4g}.",
        "reject_ood": f"{MEANINGS['reject_ood']} {reject}",
    }


def prediction_set_text(m: Manifest) -> str:
    coverage = f"{100 * (1 - m.conformal.alpha):g}%"  # alpha 0.005 is 99.5%, not a rounded 100%
    if math.isinf(m.conformal.qhat):
        return (
            f"prediction_set lists every class: the calibration set was too small to guarantee {coverage} coverage "
            "with fewer (split conformal prediction, APS), so it tells nothing about this model's doubt."
        )
    return (
        f"prediction_set lists the classes that, together, contain the true class for at least {coverage} "
        "of in-distribution images (split conformal prediction, APS); a set of more than one class names the classes "
        "the model cannot rule out. The decision and the set answer different questions: accept is about the error "
        "rate of the predicted label (the failure threshold's criterion says how it was fitted, and whether it is a "
        "bound), the set about the chance of missing the true one, so an accepted prediction may "
        "come with a set of several classes (likely right, the others still plausible). "
        "It says nothing about images that are not in the training distribution: check the decision first."
    )
