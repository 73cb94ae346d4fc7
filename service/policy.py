"""The decision a downstream system acts on (DESIGN.md): OOD beats failure beats accept."""

from __future__ import annotations

from typing import Literal

Decision = Literal["accept", "abstain", "reject_ood"]

#: Plain-words meaning of each decision, shared by the API docs, model card and demo.
MEANINGS: dict[str, str] = {
    "accept": "The input looks like the training data and the prediction is likely right: act on it.",
    "abstain": "The input looks familiar but the prediction is too likely wrong: ask a human.",
    "reject_ood": "The input is unlike anything the model was trained on: do not use any prediction.",
}


def decide(ood_flagged: bool, failure_flagged: bool) -> Decision:
    if ood_flagged:
        return "reject_ood"
    if failure_flagged:
        return "abstain"
    return "accept"
