"""ConfidNet: the target is the true-class probability, the score's sign, registry and bundle."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from models.architectures import SmallCNN
from models.confidnet import (
    ConfidNetHead,
    confidnet_loss,
    confidnet_training_pairs,
    sample_tcp,
    tcp_targets,
)
from models.deterministic import Deterministic
from models.scorers.base import ScoreInput
from models.scorers.confidnet import ConfidNetScorer
from models.scorers.registry import SCORERS, build_scorer
from tests.models.zoo_helpers import TINY_ARCH, round_trip


def test_target_is_the_true_class_probability_not_the_max() -> None:
    # Confidently wrong: MCP is high, TCP (class 2) small; right: TCP = MCP.
    logits = torch.tensor([[4.0, 0.0, -2.0], [4.0, 0.0, -2.0]])
    labels = torch.tensor([2, 0])
    probs = torch.softmax(logits, -1)
    tcp = tcp_targets(logits, labels)
    assert torch.allclose(tcp, probs[[0, 1], [2, 0]])
    assert float(tcp[0]) < 0.01 and float(probs[0].max()) > 0.9
    assert torch.allclose(tcp[1], probs[1].max())


def test_target_uses_the_sample_averaged_predictive_and_the_temperature() -> None:
    logits = torch.tensor([[[3.0, 0.0]], [[0.0, 3.0]]])  # two samples that disagree, [2, 1, 2]
    assert torch.allclose(tcp_targets(logits, torch.tensor([0])), torch.tensor([0.5]))
    hot = tcp_targets(logits[0], torch.tensor([0]), temperature=1e6)
    assert torch.allclose(hot, torch.tensor([0.5]), atol=1e-4)


def test_each_feature_sample_with_its_own_logits_gets_its_own_tcp() -> None:
    # An ensemble: member m's features [4, 6] produced member m's logits [4, 5].
    feats = torch.randn(3, 4, 6)
    logits, labels = torch.randn(3, 4, 5) * 3, torch.randint(0, 5, (4,))
    inputs, targets = confidnet_training_pairs(feats, logits, labels)
    assert inputs.shape == (12, 6) and targets.shape == (12,)
    assert torch.equal(inputs.view(3, 4, 6), feats)
    own = torch.softmax(logits, -1)[torch.arange(3)[:, None], torch.arange(4)[None, :], labels[None, :]]  # [3, 4]
    assert torch.allclose(targets.view(3, 4), own)
    assert torch.allclose(sample_tcp(logits, labels), own)
    # The samples' TCPs average to the predictive's, which the averaged head estimates.
    assert torch.allclose(targets.view(3, 4).mean(0), tcp_targets(logits, labels))
    assert not torch.allclose(targets.view(3, 4), tcp_targets(logits, labels).expand(3, -1))


def test_one_feature_row_with_many_logit_samples_gets_the_predictive_tcp() -> None:
    # MC dropout: one feature vector per input, T logit samples from its dropout head.
    feats = torch.randn(1, 4, 6)
    logits, labels = torch.randn(7, 4, 5) * 3, torch.randint(0, 5, (4,))
    inputs, targets = confidnet_training_pairs(feats, logits, labels)
    assert inputs.shape == (4, 6)
    assert torch.allclose(targets, tcp_targets(logits, labels))
    assert not torch.allclose(targets, sample_tcp(logits[:1], labels)[0])


def test_a_few_steps_fit_the_tcp() -> None:
    torch.manual_seed(0)
    feats = torch.randn(64, 8)
    target = torch.sigmoid(feats[:, 0] * 3)  # a learnable TCP
    head = ConfidNetHead(8, hidden=[16])
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    start = float(confidnet_loss(head(feats), target).detach())
    for _ in range(30):
        opt.zero_grad()
        loss = confidnet_loss(head(feats), target)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.25 * start
    assert torch.allclose(confidnet_loss(target, target), torch.tensor(0.0))


def _scorer_with_bias(bias: float) -> ConfidNetScorer:
    scorer = ConfidNetScorer(in_features=6, hidden=[4])
    with torch.no_grad():
        last = scorer.head.mlp[-1]
        last.weight.zero_()
        last.bias.fill_(bias)  # predicted TCP = sigmoid(bias) for every input
    return scorer


def _inp(feats: torch.Tensor) -> ScoreInput:
    model = Deterministic(SmallCNN(**TINY_ARCH))
    return ScoreInput(
        model=model,
        x=torch.zeros(feats.shape[1], 1, 8, 8),
        logits=torch.zeros(1, feats.shape[1], 5),
        features=feats,
        temperature=1.0,
    )


def test_score_is_one_minus_predicted_tcp_averaged_over_feature_samples() -> None:
    feats = torch.randn(3, 2, 6)
    confident, doubtful = _scorer_with_bias(6.0), _scorer_with_bias(-6.0)
    low, high = confident.score(_inp(feats)), doubtful.score(_inp(feats))
    assert low.shape == (2,) and (low < 0.01).all() and (high > 0.99).all()  # higher = more likely wrong
    scorer = ConfidNetScorer(in_features=6, hidden=[4])
    per_sample = scorer.head(feats)  # [3, 2]
    assert torch.allclose(scorer.score(_inp(feats)), 1 - per_sample.mean(0))


def test_registry_params_and_bundle_round_trip(tmp_path: Path) -> None:
    assert SCORERS["confidnet"] is ConfidNetScorer
    scorer = ConfidNetScorer(in_features=16, hidden=[8, 8])
    params = json.loads(json.dumps(scorer.params()))
    assert isinstance(build_scorer("confidnet", params), ConfidNetScorer)
    torch.manual_seed(0)
    model = Deterministic(SmallCNN(**TINY_ARCH)).eval()
    spec = {"name": "confidnet", "params": params, "threshold": 0.3}
    bundle = round_trip(tmp_path, model, TINY_ARCH, {}, failure=scorer, failure_spec=spec)
    loaded = bundle.failure_scorer
    assert isinstance(loaded, ConfidNetScorer)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        inp = _inp(model.features(x))
        assert torch.equal(loaded.score(inp), scorer.score(inp))


def _scorer_with_encoder(net: SmallCNN) -> ConfidNetScorer:
    """A scorer whose encoder is a copy of `net` (as fine-tuning starts), head in_features = hidden."""
    scorer = ConfidNetScorer(in_features=TINY_ARCH["hidden"], hidden=[8], encoder={"architecture": "small_cnn", "params": TINY_ARCH})
    scorer.encoder.load_state_dict(net.state_dict())
    return scorer.eval()


def test_a_fine_tuned_encoder_makes_the_features_from_the_input_not_from_the_classifier() -> None:
    torch.manual_seed(0)
    model = Deterministic(SmallCNN(**TINY_ARCH, dropout=0.5)).eval()
    scorer = _scorer_with_encoder(model.net)
    plain = ConfidNetScorer(in_features=TINY_ARCH["hidden"], hidden=[8])
    plain.head.load_state_dict(scorer.head.state_dict())
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        inp = ScoreInput(model, x, model.sample_logits(x), model.features(x), 1.0)
        # An unchanged copy of the encoder gives exactly the classifier's features (dropout off).
        assert torch.allclose(scorer.score(inp), plain.score(inp), atol=1e-6)
        # Once the copy moves, the score follows it, whatever features the classifier made.
        scorer.encoder.fc1.weight.add_(0.5 * torch.randn_like(scorer.encoder.fc1.weight))
        moved = scorer.score(inp)
        assert not torch.allclose(moved, plain.score(inp), atol=1e-4)
        own = 1 - scorer.head(scorer.encoder.forward_features(x))
        assert torch.allclose(moved, own)
        assert torch.equal(scorer.score(replace(inp, features=torch.zeros_like(inp.features))), moved)


def test_a_fine_tuned_scorer_round_trips_through_a_bundle(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Deterministic(SmallCNN(**TINY_ARCH)).eval()
    scorer = _scorer_with_encoder(model.net)
    with torch.no_grad():
        scorer.encoder.conv[0][0].weight.mul_(1.5)  # the copy differs from the classifier
    params = json.loads(json.dumps(scorer.params()))
    assert params["encoder"] == {"architecture": "small_cnn", "params": TINY_ARCH}
    bundle = round_trip(tmp_path, model, TINY_ARCH, {}, failure=scorer, failure_spec={"name": "confidnet", "params": params, "threshold": 0.3})
    loaded = bundle.failure_scorer
    assert isinstance(loaded, ConfidNetScorer) and loaded.encoder is not None
    assert not loaded.encoder.training  # dropout off when served
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        inp = ScoreInput(model, x, model.sample_logits(x), model.features(x), 1.0)
        assert torch.equal(loaded.score(inp), scorer.score(inp))
    assert torch.equal(loaded.encoder.conv[0][0].weight, scorer.encoder.conv[0][0].weight)
    assert not torch.equal(loaded.encoder.conv[0][0].weight, bundle.model.net.conv[0][0].weight)
