"""Per-row Python values made for a whole batch equal the same numbers read row by row."""

from __future__ import annotations

import torch

from models.pipeline import PipelineOutput, to_values


def batch_output(s: int, b: int, k: int, seed: int = 0) -> PipelineOutput:
    g = torch.Generator().manual_seed(seed)
    sp = torch.softmax(torch.randn(s, b, k, generator=g) * 3, -1)
    return PipelineOutput(
        sp.mean(0),
        sp,
        torch.rand(b, generator=g),
        torch.rand(b, generator=g),
        torch.rand(b, generator=g),
        torch.rand(b, generator=g),
        torch.rand(b, k, generator=g) > 0.5,
    )


def test_values_match_the_tensors_row_by_row() -> None:
    out = batch_output(s=5, b=7, k=4)
    values = to_values(out)
    assert len(values) == 7
    for i, v in enumerate(values):
        assert v.label == int(out.probs[i].argmax())
        assert v.probs == out.probs[i].tolist()
        assert v.failure_score == float(out.failure_score[i])
        assert v.ood_score == float(out.ood_score[i])
        assert v.predictive_entropy == float(out.predictive_entropy[i])
        assert v.mutual_information == float(out.mutual_information[i])
        assert v.prediction_set == out.prediction_sets[i].nonzero().flatten().tolist()
        assert v.sample_count == 5
        assert v.sample_min == out.sample_probs[:, i].min(0).values.tolist()
        assert v.sample_max == out.sample_probs[:, i].max(0).values.tolist()
        assert v.sample_votes == out.sample_probs[:, i, v.label].tolist()


def test_votes_keep_the_first_samples_and_rows_slice_with_the_tensors() -> None:
    out = batch_output(s=6, b=5, k=3, seed=1).with_values(keep=4)
    assert out.values is not None
    assert all(len(v.sample_votes) == 4 for v in out.values)
    part = out.rows(2, 4)
    assert part.values == out.values[2:4]
    assert part.row_values()[0].probs == out.probs[2].tolist()
    joined = PipelineOutput.concat([out.rows(0, 2), out.rows(2, 5)])
    assert joined.values == out.values
    # A part without values: the joined output has none, and they are made on demand.
    assert PipelineOutput.concat([out.rows(0, 2), batch_output(6, 3, 3, seed=2)]).values is None
