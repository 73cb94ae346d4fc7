"""OOD scorers (energy, ODIN, Mahalanobis): hand-computed values, behaviour, sign, state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from torch import nn

from models.architectures import SmallCNN
from models.base import UncertaintyModel
from models.deterministic import Deterministic
from models.scorers.base import Graph, ScoreInput, Scorer
from models.scorers.energy import Energy, energy
from models.scorers.mahalanobis import Mahalanobis
from models.scorers.odin import (
    ODIN,
    graph_grad,
    log_max_softmax_grad,
    max_softmax,
)
from models.scorers.registry import build_scorer


class LinearHeads(UncertaintyModel):
    """Stand-in sampled model: features = flat pixels ``[1, B, D]``; S linear heads -> ``[S, B, K]``."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)  # [S, K, D]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).unsqueeze(0)

    def head_samples(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bd,skd->sbk", feats[0], self.weight)


def tiny_cnn(seed: int = 0) -> Deterministic:
    """A random SmallCNN on 8x8 inputs, float64, with non-trivial BatchNorm running stats."""
    torch.manual_seed(seed)
    model = Deterministic(SmallCNN(num_classes=5, input_size=8, widths=(4, 8), hidden=16)).double()
    with torch.no_grad():
        model.train()(torch.randn(32, 1, 8, 8, dtype=torch.float64) * 2 + 0.5)
    return model.eval()


def score_input(model: UncertaintyModel, x: torch.Tensor, temperature: float = 1.0) -> ScoreInput:
    with torch.no_grad():
        feats = model.features(x)
        logits = model.head_samples(feats)
    return ScoreInput(model=model, x=x, logits=logits, features=feats, temperature=temperature)


def test_energy_matches_hand_computation() -> None:
    logits = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], [[3.0, -1.0, 0.5], [10.0, 0.0, -2.0]]])  # [2, 2, 3]
    for t in (1.0, 2.0):
        # Energy of the sample-averaged logits, by hand: -T log sum_k exp(mean_s l_sk / T).
        averaged = [[(a + b) / 2 for a, b in zip(r0, r1, strict=True)] for r0, r1 in zip(*logits.tolist(), strict=True)]
        expected = torch.tensor([-t * math.log(sum(math.exp(v / t) for v in row)) for row in averaged])
        inp = ScoreInput(nn.Identity(), torch.zeros(2, 1), logits, torch.zeros(1, 2, 1), 3.0)  # type: ignore[arg-type]
        torch.testing.assert_close(Energy(t).score(inp), expected)


def test_energy_of_disagreeing_samples_exceeds_their_mean_energy() -> None:
    # Two samples that each put one large logit on a different class: each alone is a
    # confident (low-energy) input; averaged they are not, and the score says so.
    logits = torch.tensor([[[8.0, 0.0, 0.0]], [[0.0, 8.0, 0.0]]])  # [S=2, B=1, K=3]
    agree = torch.tensor([[[8.0, 0.0, 0.0]], [[8.0, 0.0, 0.0]]])

    def inp(lg: torch.Tensor) -> ScoreInput:
        return ScoreInput(nn.Identity(), torch.zeros(1, 1), lg, torch.zeros(1, 1, 1), 1.0)  # type: ignore[arg-type]

    mean_of_energies = energy(logits, 1.0).mean(0)
    torch.testing.assert_close(Energy().score(inp(agree)), energy(agree, 1.0).mean(0))  # no gap without disagreement
    assert float(Energy().score(inp(logits))) > float(mean_of_energies) + 3.0


def test_odin_without_step_is_tempered_max_softmax() -> None:
    model = LinearHeads(torch.randn(3, 4, 6))
    inp = score_input(model, torch.randn(5, 1, 2, 3), temperature=2.0)
    # predictive: the predictive distribution's log-probabilities are the logits that T tempers
    log_pbar = torch.log(torch.softmax(inp.logits, -1).mean(0))
    expected = 1.0 - torch.softmax(log_pbar / 7.0, -1).max(-1).values
    torch.testing.assert_close(ODIN(temperature=7.0, eps=0.0).score(inp), expected)
    legacy = 1.0 - torch.softmax(inp.logits / 7.0, -1).mean(0).max(-1).values
    torch.testing.assert_close(ODIN(temperature=7.0, eps=0.0, reduction="mean_softmax").score(inp), legacy)
    assert not torch.allclose(expected, legacy)  # S = 3: the two reductions are different scores


def test_odin_reductions_agree_with_liang_for_one_sample() -> None:
    logits = torch.randn(1, 6, 5, dtype=torch.float64) * 4
    inp = ScoreInput(nn.Identity(), torch.zeros(6, 1), logits, torch.zeros(1, 6, 1), 1.0)  # type: ignore[arg-type]
    liang = 1.0 - torch.softmax(logits[0] / 1000.0, -1).max(-1).values
    for reduction in ("predictive", "mean_softmax"):
        torch.testing.assert_close(ODIN(1000.0, 0.0, reduction=reduction).score(inp), liang)


def test_predictive_odin_sees_disagreement_that_mean_softmax_forgets() -> None:
    # Same mean logits [5, 0, 0], so at T = 1000 the mean of tempered softmaxes hardly
    # tells them apart; but in `split` one member is confident and the other undecided,
    # so the ensemble's predictive puts a third of its mass on the other classes.
    agree = torch.tensor([[[5.0, 0.0, 0.0]], [[5.0, 0.0, 0.0]]], dtype=torch.float64)
    split = torch.tensor([[[10.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]], dtype=torch.float64)

    def score(lg: torch.Tensor, reduction: str) -> float:
        inp = ScoreInput(nn.Identity(), torch.zeros(1, 1), lg, torch.zeros(1, 1, 1), 1.0)  # type: ignore[arg-type]
        return float(ODIN(1000.0, 0.0, reduction=reduction).score(inp))

    assert score(split, "mean_softmax") == pytest.approx(score(agree, "mean_softmax"), abs=1e-5)
    assert score(split, "predictive") > score(agree, "predictive") + 1e-4


def test_odin_manifest_without_reduction_loads_as_it_was_fitted() -> None:
    old = build_scorer("odin", {"temperature": 1000.0, "eps": 0.0, "std": [0.3081]})
    assert isinstance(old, ODIN) and old.reduction == "mean_softmax"
    assert build_scorer("odin").params()["reduction"] == "predictive"  # a fresh scorer: the new rule
    with pytest.raises(ValueError, match="reduction"):
        ODIN(reduction="median")


@pytest.mark.parametrize("temperature", [1.0, 1000.0])
@pytest.mark.parametrize(("sampled", "reduction"), [(False, "predictive"), (True, "predictive"), (True, "mean_softmax")])
def test_odin_step_raises_max_softmax(temperature: float, sampled: bool, reduction: str) -> None:
    model = LinearHeads(torch.randn(3, 5, 16, dtype=torch.float64)) if sampled else tiny_cnn()
    x = torch.randn(8, 1, 4 if sampled else 8, 4 if sampled else 8, dtype=torch.float64)
    scorer = ODIN(temperature=temperature, eps=1e-3, std=[0.5], reduction=reduction)
    x_adv = scorer.perturb(model, x)
    moved = (x_adv - x).abs()
    assert torch.all((moved == 0) | torch.isclose(moved, torch.tensor(2e-3, dtype=torch.float64)))  # eps / std
    with torch.no_grad():
        clean = max_softmax(model.sample_logits(x), temperature, reduction)
        assert torch.all(max_softmax(model.sample_logits(x_adv), temperature, reduction) > clean)
    inp = score_input(model, x)
    assert torch.all(scorer.score(inp) < ODIN(temperature=temperature, eps=0.0, reduction=reduction).score(inp))


def test_odin_gradient_is_per_sample() -> None:
    model = tiny_cnn()
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    grad = log_max_softmax_grad(model, x, 1000.0)
    other = x.clone()
    other[1:] = torch.randn(5, 1, 8, 8, dtype=torch.float64) * 3
    torch.testing.assert_close(log_max_softmax_grad(model, other, 1000.0)[0], grad[0])
    torch.testing.assert_close(log_max_softmax_grad(model, x[:1], 1000.0)[0], grad[0])
    assert grad[0].abs().sum() > 0


def test_odin_refuses_training_batchnorm_and_keeps_the_model_as_it_is() -> None:
    model = tiny_cnn().train()
    with pytest.raises(RuntimeError, match="eval"):
        ODIN(eps=0.01).score(score_input(model, torch.randn(2, 1, 8, 8, dtype=torch.float64)))
    assert model.training


def test_odin_never_writes_parameter_gradients() -> None:
    model = tiny_cnn()
    inp = score_input(model, torch.randn(3, 1, 8, 8, dtype=torch.float64))
    with torch.no_grad():  # the scorer turns gradients on for itself
        ODIN(eps=0.01).score(inp)
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        ODIN(eps=0.01).score(inp)


def test_mahalanobis_matches_hand_computed_2d_case() -> None:
    base = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    feats = torch.cat([base, base + torch.tensor([10.0, 0.0])])
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    scorer = Mahalanobis.from_features(feats, labels, num_classes=2, ridge=0.0)
    # Sigma = diag(0.5, 2): d2((1,1), mu_0) = 1/0.5 + 1/2 = 2.5; d2((1,1), mu_1) = 81/0.5 + 0.5.
    torch.testing.assert_close(
        scorer.distances(torch.tensor([[1.0, 1.0]])), torch.tensor([[2.5, 162.5]], dtype=torch.float64)
    )
    probe = torch.tensor([[10.0, 0.0], [1.0, 1.0], [5.0, 30.0]]).unsqueeze(0)
    s = scorer.score(ScoreInput(nn.Identity(), torch.zeros(3, 1), torch.zeros(1, 3, 2), probe, 1.0))  # type: ignore[arg-type]
    torch.testing.assert_close(s, torch.tensor([0.0, 2.5, 5.0**2 / 0.5 + 30.0**2 / 2.0]))


def test_mahalanobis_matches_scipy_with_full_covariance() -> None:
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(60, 3, generator=gen) @ torch.tensor([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]])
    labels = torch.arange(60) % 3
    feats = feats + 4.0 * nn.functional.one_hot(labels, 3).float()
    scorer = Mahalanobis(3, 3, ridge=0.0).fit(feats, labels)
    f, y = feats.double().numpy(), labels.numpy()
    mus = np.stack([f[y == c].mean(0) for c in range(3)])
    vi = np.linalg.inv(sum(np.outer(r - mus[c], r - mus[c]) for r, c in zip(f, y, strict=True)) / len(f))
    probes = torch.randn(4, 3, generator=gen) * 5
    expected = [[scipy_mahalanobis(p, m, vi) ** 2 for m in mus] for p in probes.double().numpy()]
    torch.testing.assert_close(scorer.distances(probes), torch.tensor(expected, dtype=torch.float64))


def test_mahalanobis_averages_feature_samples_and_needs_fitting() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        Mahalanobis(2, 3).distances(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="every class"):
        Mahalanobis(3, 2).fit(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))
    scorer = Mahalanobis(2, 3).fit(torch.randn(3, 20, 3), torch.arange(20) % 2)  # [S_f, N, D]
    samples = torch.randn(3, 4, 3)
    torch.testing.assert_close(scorer.distances(samples), scorer.distances(samples.mean(0)))
    assert torch.all(scorer.distances(scorer.means.float()).diagonal() < 1e-9)


def test_mahalanobis_state_round_trips_through_safetensors_strictly() -> None:
    scorer = Mahalanobis(4, 5, ridge=1e-3).fit(torch.randn(40, 5), torch.arange(40) % 4)
    blob = st_save({k: v.contiguous() for k, v in scorer.state_dict().items()})
    rebuilt = build_scorer("mahalanobis", json.loads(json.dumps(scorer.params())))
    rebuilt.load_state_dict(st_load(blob), strict=True)
    probe = torch.randn(1, 6, 5)
    inp = ScoreInput(nn.Identity(), torch.zeros(6, 1), torch.zeros(1, 6, 4), probe, 1.0)  # type: ignore[arg-type]
    torch.testing.assert_close(rebuilt.score(inp), scorer.score(inp))
    with pytest.raises(RuntimeError):
        Mahalanobis(4, 6).load_state_dict(st_load(blob), strict=True)


@pytest.mark.parametrize(
    "scorer",
    [Energy(2.0), ODIN(), ODIN(10.0, 0.004, [0.3081]), Mahalanobis(10, 128, 1e-4)],
    ids=["energy", "odin", "odin_std", "mahalanobis"],
)
def test_params_round_trip_through_json_and_registry(scorer: Scorer) -> None:
    rebuilt = build_scorer(scorer.name, json.loads(json.dumps(scorer.params())))
    assert type(rebuilt) is type(scorer) and rebuilt.params() == scorer.params()


@pytest.mark.parametrize("name", ["energy", "odin", "odin_step", "mahalanobis", "msp", "entropy"])
def test_in_distribution_scores_below_out_of_distribution(name: str) -> None:
    # Toy problem: 3 heads ~ 5 * identity on 4-d inputs; ID inputs sit near 3 * e_k, the
    # OOD input is far from every class and gives flat logits.
    gen = torch.Generator().manual_seed(0)
    model = LinearHeads(5.0 * torch.eye(4).expand(3, 4, 4) + 0.1 * torch.randn(3, 4, 4, generator=gen))
    labels = torch.arange(40) % 4
    x_id = (3.0 * nn.functional.one_hot(labels, 4) + 0.2 * torch.randn(40, 4, generator=gen)).view(40, 1, 2, 2)
    x = torch.cat([x_id, torch.full((1, 1, 2, 2), -5.0)])
    scorer = {
        "energy": Energy(),
        "odin": ODIN(eps=0.0),
        "odin_step": ODIN(eps=0.01),
        "mahalanobis": Mahalanobis.from_features(x_id.flatten(1), labels, 4),
    }.get(name) or build_scorer(name)
    s = scorer.score(score_input(model, x))
    assert s.shape == (41,)
    assert torch.all(s[:-1] < s[-1])


@pytest.mark.parametrize("sampled", [False, True])
def test_odin_on_a_recorded_forward_equals_odin_on_its_own_forward(sampled: bool) -> None:
    model = LinearHeads(torch.randn(3, 5, 16, dtype=torch.float64)) if sampled else tiny_cnn()
    x = torch.randn(6, 1, 4 if sampled else 8, 4 if sampled else 8, dtype=torch.float64)

    def recorded() -> ScoreInput:  # a graph serves one backward, so one per use
        with torch.enable_grad():
            leaf = x.clone().requires_grad_(True)
            feats = model.features(leaf)
            logits = model.head_samples(feats)
        return ScoreInput(model, x, logits.detach(), feats.detach(), 1.0, Graph(leaf, logits))

    torch.testing.assert_close(graph_grad(recorded().graph, 1000.0), log_max_softmax_grad(model, x, 1000.0))  # type: ignore[arg-type]
    scorer = ODIN(temperature=1000.0, eps=1e-3, std=[0.5])
    torch.testing.assert_close(scorer.score(recorded()), scorer.score(score_input(model, x)), rtol=0, atol=1e-12)
    assert torch.all(scorer.score(recorded()) < ODIN(temperature=1000.0, eps=0.0).score(recorded()))
