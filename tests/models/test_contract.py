"""One contract for every registered method (as timm tests every model): shapes, no NaN, round trip.

A method not listed in CONFIGS is tested with empty method params on the tiny
architecture, so a newly registered method is covered without touching this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from models.methods import METHODS, build_model
from models.pipeline import Pipeline
from tests.models.zoo_helpers import TINY_ARCH, randomise_batchnorm, round_trip

#: (arch params, method params, expected S) per method; S=None: not checked.
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any], int | None]] = {
    "deterministic": (TINY_ARCH, {}, 1),
    "mc_dropout": ({**TINY_ARCH, "dropout": 0.25}, {"num_samples": 4, "seed": 0}, 4),
    "ensemble": (TINY_ARCH, {"members": 3}, 3),
    "variational": (TINY_ARCH, {"num_samples": 4, "seed": 0}, 4),
    "laplace": (TINY_ARCH, {"num_samples": 4, "seed": 0}, 4),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_contract(method: str, tmp_path: Path) -> None:
    arch_params, method_params, samples = CONFIGS.get(method, (TINY_ARCH, {}, None))
    torch.manual_seed(0)
    model = build_model(method, "small_cnn", arch_params, method_params)
    assert model.method == method
    randomise_batchnorm(model)
    model.eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        feats = model.features(x)
        logits = model.head_samples(feats)
    assert feats.dim() == 3 and feats.shape[1] == 3
    assert logits.dim() == 3 and logits.shape[1:] == (3, 5)
    if samples is not None:
        assert logits.shape[0] == samples
    assert torch.isfinite(logits).all() and torch.isfinite(feats).all()

    bundle = round_trip(tmp_path, model, arch_params, method_params)
    with torch.no_grad():  # the same weights and seed draw the same noise: no reseeding needed
        assert torch.equal(bundle.model.sample_logits(x), model.sample_logits(x))
    # The serving path: pixels in, per-input results out, the mode left as loaded.
    out = Pipeline(bundle).run(torch.rand(2, 1, 8, 8))
    assert out.probs.shape == (2, 5) and torch.isfinite(out.mutual_information).all()
    assert not bundle.model.training


@pytest.mark.parametrize("method", sorted(METHODS))
@torch.no_grad()
def test_an_input_gets_the_same_answer_alone_in_a_batch_and_at_every_call(method: str, tmp_path: Path) -> None:
    # What the service logs for an image must be what the image gets: not a function of the
    # other requests that shared its batch, nor of how many requests came before.
    arch_params, method_params, samples = CONFIGS.get(method, (TINY_ARCH, {}, None))
    torch.manual_seed(0)
    model = build_model(method, "small_cnn", arch_params, method_params)
    randomise_batchnorm(model)
    for param in model.parameters():  # members and samples that disagree, whatever the initialisation
        param.add_(0.3 * torch.randn_like(param))
    if hasattr(model, "posterior_scale"):  # an unfitted Laplace samples its MAP only: give it a posterior
        model.posterior_scale.copy_(0.3 * torch.eye(model.posterior_scale.shape[0]))
    pipeline = Pipeline(round_trip(tmp_path, model.eval(), arch_params, method_params))
    pixels = torch.rand(5, 1, 8, 8)
    batch = pipeline.run(pixels)
    if samples is not None and samples > 1:  # a stochastic method's samples must still differ
        assert not torch.allclose(batch.sample_probs[0], batch.sample_probs[1])
    for alone, row in ((pipeline.run(pixels[2:3]), 2), (pipeline.run(pixels.flip(0)), 2)):
        at = 0 if alone.probs.shape[0] == 1 else 4 - row
        torch.testing.assert_close(alone.probs[at], batch.probs[row], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(alone.mutual_information[at], batch.mutual_information[row], rtol=1e-3, atol=1e-6)
    assert torch.equal(pipeline.run(pixels).probs, batch.probs)


@pytest.mark.parametrize("method", ["mc_dropout", "ensemble", "variational", "laplace"])
def test_unknown_method_params_are_refused(method: str) -> None:
    # A typo in a manifest must fail the load (TypeError -> BundleError), not be ignored.
    arch_params, method_params, _ = CONFIGS[method]
    with pytest.raises(TypeError):
        build_model(method, "small_cnn", arch_params, {**method_params, "num_sampels": 3})


@pytest.mark.parametrize("method", ["mc_dropout", "ensemble", "variational", "laplace"])
def test_training_arch_params_with_dropout_build_every_method(method: str) -> None:
    # The trainers share one `arch_params` (dropout included) across methods.
    model = build_model(method, "small_cnn", {**TINY_ARCH, "dropout": 0.25}, {})
    assert model.eval().sample_logits(torch.randn(2, 1, 8, 8)).shape[1:] == (2, 5)
