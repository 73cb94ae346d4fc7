"""ConfidNet (Corbière et al. 2019) as a `vigil train --method` choice.

ConfidNet is not a classifier of its own: it is a confidence head on a trained, frozen
classifier. This trainer takes the baseline network (trained here, or reused with
`--base-bundle`) and trains the head (`training.confidnet_fit`); the bundle serves the
network's prediction with the head's output as its `failure` score. It is the same as
`--method deterministic --failure-scorer confidnet`; on another classifier (the deep
ensemble, as shipped) use `--failure-scorer confidnet` or `auto` with that method.
"""

from __future__ import annotations

import time

from models.deterministic import Deterministic
from models.usage import UsageError
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig
from training.methods.common import bundle_spec
from training.methods.deterministic import base_or_train, record_base
from training.options import MethodOptions


def train_confidnet_method(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[Deterministic, BundleSpec]:
    if opts.failure_scorer not in ("confidnet", "auto"):
        # Before any training: another failure score would make this plain `deterministic`.
        raise UsageError(f"--method confidnet trains a ConfidNet head: --failure-scorer must be confidnet or auto, not {opts.failure_scorer}")
    start = time.perf_counter()
    net, base = base_or_train(splits, cfg, opts, "confidnet")
    model = Deterministic(net)
    # The served model is the deterministic network; the head is its failure scorer (with
    # `auto`, the head competes with MCP & co. on held-out data and may lose to them).
    return model, record_base(bundle_spec(model, "deterministic", {}, splits, cfg, opts, start), base)
