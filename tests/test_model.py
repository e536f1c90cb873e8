"""Model shapes for every variant, attention is a distribution, nothing is cached between calls."""

from __future__ import annotations

import pytest
import torch

from vqa.model import ModelSpec, VQAModel


def batch(b: int = 3, c: int = 16, h: int = 3, w: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "features": torch.rand(b, c, h, w, generator=g).half(),
        "question": torch.randint(2, 20, (b, 7), generator=g),
        "question_len": torch.tensor([7, 3, 1][:b]),
        "candidates": torch.randint(2, 20, (b, 4, 5), generator=g),
        "candidate_len": torch.randint(1, 6, (b, 4), generator=g),
    }


@pytest.mark.parametrize("variant", ["attention", "no_attention", "blind"])
@pytest.mark.parametrize(("rnn", "bidirectional", "answer_encoder"), [("lstm", False, "rnn"), ("gru", True, "mean")])
def test_shapes_of_every_variant(variant: str, rnn: str, bidirectional: bool, answer_encoder: str) -> None:
    dims = {"embed_dim": 8, "hidden_dim": 12, "attention_dim": 10, "glimpses": 2}
    spec = ModelSpec(20, (16, 3, 4), variant=variant, rnn=rnn, bidirectional=bidirectional,
                     answer_encoder=answer_encoder, **dims)  # fmt: skip
    model = VQAModel(spec).eval()
    scores, attention = model(**batch())
    assert scores.shape == (3, 4) and attention.shape == (3, 4, 2, 3, 4)
    assert torch.allclose(attention.sum((-2, -1)), torch.ones(3, 4, 2), atol=1e-5)
    if variant != "attention":
        assert torch.allclose(attention, torch.full_like(attention, 1 / 12))
    again, _ = model(**batch())
    assert torch.equal(scores, again), "eval-mode forward is a pure function of its inputs"
    scores.sum().backward()


def test_attention_depends_on_the_candidate_and_on_position() -> None:
    torch.manual_seed(0)
    model = VQAModel(ModelSpec(20, (16, 3, 4), embed_dim=8, hidden_dim=12, attention_dim=10)).eval()
    x = batch()
    _, attention = model(**x)
    assert not torch.allclose(attention[:, 0], attention[:, 1]), "each candidate has its own attention"
    same = {**x, "features": torch.ones_like(x["features"])}  # identical cells: only position tells them apart
    _, flat = model(**same)
    assert flat[0, 0, 0].std() > 0, "the grid carries position information"


def test_blind_ignores_the_image() -> None:
    model = VQAModel(ModelSpec(20, (16, 3, 4), variant="blind", embed_dim=8, hidden_dim=12)).eval()
    x = batch()
    a, _ = model(**x)
    b, _ = model(**{**x, "features": torch.zeros_like(x["features"])})
    assert torch.equal(a, b)
