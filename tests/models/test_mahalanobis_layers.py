"""Per-layer features of the models, and the layer-ensemble Mahalanobis scorer built on them."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from models.architectures import SmallCNN
from models.deterministic import Deterministic
from models.ensemble import pack_ensemble
from models.mc_dropout import mc_dropout
from models.methods import build_model
from models.scorers.base import ScoreInput
from models.scorers.mahalanobis import Mahalanobis
from models.scorers.mahalanobis_layers import MahalanobisLayers
from models.scorers.registry import build_scorer
from tests.models.zoo_helpers import TINY_ARCH, randomise_batchnorm


def _net(seed: int, dropout: float = 0.0) -> SmallCNN:
    torch.manual_seed(seed)
    net = SmallCNN(**{**TINY_ARCH, "dropout": dropout})
    randomise_batchnorm(net, seed)
    return net.eval()


def test_small_cnn_layers_are_pooled_blocks_then_penultimate() -> None:
    net = _net(0)
    x = torch.randn(3, 1, 8, 8)
    layers = net.forward_layers(x)
    assert [tuple(f.shape) for f in layers] == [(3, 4), (3, 8), (3, 16)]
    torch.testing.assert_close(layers[0], net.conv[0](x).mean((2, 3)))
    torch.testing.assert_close(layers[-1], net.forward_features(x))


def test_wrappers_expose_the_backbone_layers_and_the_ensemble_its_members() -> None:
    x = torch.randn(5, 1, 8, 8)
    net = _net(1, dropout=0.25)
    for model in (Deterministic(net), mc_dropout(net, num_samples=3, seed=0)):
        got = model.eval().layer_features(x)
        for g, want in zip(got, net.forward_layers(x), strict=True):
            torch.testing.assert_close(g, want.unsqueeze(0))
    members = [_net(s) for s in (2, 3, 4)]
    packed = pack_ensemble(members).eval()
    got = packed.layer_features(x)  # [M, B, D_l]: member m's own layers, not a mix of channels
    for layer, g in enumerate(got):
        torch.testing.assert_close(g, torch.stack([m.forward_layers(x)[layer] for m in members]), rtol=1e-5, atol=1e-5)


def test_a_model_without_layers_says_so() -> None:
    model = build_model("variational", "small_cnn", TINY_ARCH, {"num_samples": 2, "seed": 0})
    with pytest.raises(NotImplementedError, match="per-layer"):
        model.layer_features(torch.randn(1, 1, 8, 8))


def _fitted(seed: int = 0) -> tuple[MahalanobisLayers, Deterministic, torch.Tensor]:
    """A scorer fitted on a random tiny CNN's layers of class-shifted inputs (labels: the shift)."""
    model = Deterministic(_net(seed))
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(300) % 5
    x = torch.randn(300, 1, 8, 8, generator=gen) + y.view(-1, 1, 1, 1).float()
    with torch.no_grad():
        train, held = model.layer_features(x[:200]), model.layer_features(x[200:])
    scorer = MahalanobisLayers(5, [f.shape[-1] for f in train]).fit(train, y[:200], held)
    return scorer, model, x


def test_score_is_the_sum_of_standardised_per_layer_mahalanobis_scores() -> None:
    scorer, model, x = _fitted()
    y = torch.arange(300) % 5
    with torch.no_grad():
        train, held, probe = model.layer_features(x[:200]), model.layer_features(x[200:]), model.layer_features(x[:7])
    expected = torch.zeros(7, dtype=torch.float64)
    for f_train, f_held, f_probe in zip(train, held, probe, strict=True):
        gauss = Mahalanobis.from_features(f_train, y[:200], 5)
        ref = gauss.distances(f_held).min(-1).values
        expected += (gauss.distances(f_probe).min(-1).values - ref.mean()) / ref.std()
    inp = ScoreInput(model, x[:7], torch.zeros(1, 7, 5), probe[-1], 1.0)
    torch.testing.assert_close(scorer.score(inp), expected.float())
    # On the held-out data it was standardised on, every layer has mean 0 and std 1.
    z = scorer.layer_scores(held)
    torch.testing.assert_close(z.mean(1), torch.zeros(len(held), dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(z.std(1), torch.ones(len(held), dtype=torch.float64))


def test_class_means_score_lower_than_a_far_point() -> None:
    scorer, _, _ = _fitted()
    means = [g.means.float() for g in scorer.layers]  # type: ignore[union-attr]
    far = [m[:1] + 50.0 * m.abs().max() for m in means]
    at_means = scorer.layer_scores([m.unsqueeze(0) for m in means]).sum(0)  # [K]
    assert torch.all(at_means < scorer.layer_scores([f.unsqueeze(0) for f in far]).sum(0))


def test_unfitted_scorer_raises_and_state_round_trips_strictly() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        MahalanobisLayers(2, [3]).layer_scores([torch.zeros(1, 3)])
    scorer, model, x = _fitted(1)
    blob = st_save({k: v.contiguous() for k, v in scorer.state_dict().items()})
    rebuilt = build_scorer("mahalanobis_layers", json.loads(json.dumps(scorer.params())))
    rebuilt.load_state_dict(st_load(blob), strict=True)
    inp = ScoreInput(model, x[:4], torch.zeros(1, 4, 5), torch.zeros(1, 4, 16), 1.0)
    torch.testing.assert_close(rebuilt.score(inp), scorer.score(inp))
    with pytest.raises(RuntimeError):
        MahalanobisLayers(5, [4, 8]).load_state_dict(st_load(blob), strict=True)
