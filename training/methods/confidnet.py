"""ConfidNet (Corbière et al. 2019) as a `vigil train --method` choice.

ConfidNet is not a classifier of its own: it is a confidence head on a trained, frozen
classifier. This trainer takes the baseline network (trained here, or reused with
`--base-bundle`) and trains the head (`training.confidnet_fit`); the bundle serves the
network's prediction with the head's output as its `failure` score. It is the same as
`--method deterministic --failure-scorer confidnet`; on another classifier (the deep
ensemble, as shipped) use `--failure-scorer confidnet` or `auto` with that method.
"""

from __future__ import annotations

import dataclasses
import time

from models.deterministic import Deterministic
from training.data import Splits
from training.finalize import BundleSpec
from training.loop import TrainConfig
from training.methods.common import bundle_spec
from training.methods.deterministic import base_or_train, record_base
from training.options import MethodOptions


def train_confidnet_method(splits: Splits, cfg: TrainConfig, opts: MethodOptions) -> tuple[Deterministic, BundleSpec]:
    start = time.perf_counter()
    net, base = base_or_train(splits, cfg, opts, "confidnet")
    model = Deterministic(net)
    # `auto` also trains the head (and lets it compete with MCP); anything else becomes the head.
    head_opts = opts if opts.failure_scorer == "auto" else dataclasses.replace(opts, failure_scorer="confidnet")
    # The served model is the deterministic network; the head is its failure scorer.
    return model, record_base(bundle_spec(model, "deterministic", {}, splits, cfg, head_opts, start), base)
