"""The naive baseline: the same service and weights, one image per forward, members in a loop.

`python -m benchmarks.naive --model DIR --port P` serves the bundle with the very
same app (decoding, logging to the database, responses) but with micro-batching off
(batches of one, no wait), no channels_last, and a packed ensemble unpacked into its
members, run one after another in a Python loop (ODIN's backward goes through the loop
too). What it lacks is exactly what issue 6 adds.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI

from models.architectures import SmallCNN
from models.base import UncertaintyModel
from models.bundle import load_bundle
from models.ensemble import PackedEnsemble
from models.fusion import fold_batchnorm
from service.app import create_app
from service.settings import Settings


def unpack(packed: PackedEnsemble) -> list[SmallCNN]:
    """The members of a packed ensemble as separate networks (exact inverse of `pack_ensemble`)."""
    m = packed.members
    convs = [blk[0] for blk in packed.conv]
    widths = [c.out_channels // m for c in convs]
    side = round((packed.flat_dim / widths[-1]) ** 0.5) * 2 ** len(widths)
    nets = [SmallCNN(convs[0].in_channels, packed.num_classes, side, widths, packed.hidden_dim) for _ in range(m)]
    with torch.no_grad():
        for k, net in enumerate(nets):
            for i, w in enumerate(widths):
                rows = slice(k * w, (k + 1) * w)
                net.conv[i][0].weight.copy_(packed.conv[i][0].weight[rows])
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(net.conv[i][1], name).copy_(getattr(packed.conv[i][1], name)[rows])
            net.fc1.weight.copy_(packed.fc1_weight[k])
            net.fc1.bias.copy_(packed.fc1_bias[k])
            net.fc2.weight.copy_(packed.fc2_weight[k])
            net.fc2.bias.copy_(packed.fc2_bias[k])
    return [n.eval().requires_grad_(False) for n in nets]


class LoopedEnsemble(UncertaintyModel):
    """An ensemble computed member by member: the textbook implementation."""

    method = "ensemble"

    def __init__(self, members: list[SmallCNN]) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleList(members)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([net.forward_features(x) for net in self.nets])

    def head_samples(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.stack([net.forward_head(f) for net, f in zip(self.nets, feats, strict=True)])

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        # Per layer [M, B, D_l], member by member (for the layer-wise Mahalanobis scorer).
        per_member = [net.forward_layers(x) for net in self.nets]
        return [torch.stack(layer) for layer in zip(*per_member, strict=True)]


def naive_app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):
            bundle = app.state.ctx.bundle
            if isinstance(bundle.model, PackedEnsemble):
                # Unpacked from the stored weights (the runtime has folded the served copy's
                # BatchNorm); the members get the same folding, so only batching differs.
                looped = LoopedEnsemble(unpack(load_bundle(settings.model_dir).model))
                if settings.fold_batchnorm:
                    fold_batchnorm(looped)
                bundle.model = looped  # the pipeline reads bundle.model per call
            yield

    app.router.lifespan_context = lifespan
    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    # In-process inference: the looped model replaces the parent's copy, which a child
    # process (the service's default) would not see.
    s = Settings(model_dir=args.model, migrate_on_start=True, batch_max_size=1, batch_max_wait_ms=0, channels_last=False, inference_process=False)
    logging.basicConfig(level=logging.WARNING)
    uvicorn.run(naive_app(s), host="127.0.0.1", port=args.port, log_config=None, access_log=s.access_log)
