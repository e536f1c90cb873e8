"""The decoder head (``vqa/model/decoder.py``): what multiple choice, open-ended answers and the maps rely on."""

from __future__ import annotations

import pytest
import torch
from conftest import build_model, model_spec

from vqa.common.errors import ConfigError
from vqa.model.decoder import DecoderNet, mean_past_end


def inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    """3 questions about 2 images (two share one), 4 candidates of 1-3 words, padded with 0."""
    g = torch.Generator().manual_seed(seed)
    cand_len = torch.randint(1, 4, (3, 4), generator=g)
    cands = torch.randint(2, 20, (3, 4, 3), generator=g)
    cands = cands * (torch.arange(3) < cand_len[..., None])  # [3, 4, 3]: 0 past each answer's end
    return {"features": torch.randn(2, 16, 3, 4, generator=g), "question": torch.randint(2, 20, (3, 5), generator=g),
            "question_len": torch.tensor([5, 3, 2]), "candidates": cands, "candidate_len": cand_len,
            "image_index": torch.tensor([0, 1, 1])}  # fmt: skip


@pytest.fixture(params=["bilinear", "additive"])
def net(request) -> DecoderNet:
    """Both forms of the decoder's attention (``model.attention``): the factorised default and the seeds' own."""
    torch.manual_seed(0)
    return build_model(model_spec(head="decoder", count=True, question_glimpses=1, attention=request.param)).eval()


def test_scores_are_mean_log_likelihoods_and_padding_never_changes_them(net) -> None:
    x = inputs()
    scores, att, (gates, _) = net(**x, with_aux=True)
    assert scores.shape == (3, 4) and (scores < 0).all(), "a mean of log-probabilities"
    assert att.shape == (3, 4, 4, 3, 4), "[B, K, T = longest answer + the end, H, W]"
    assert gates is not None and gates.shape[0] == 3, "the counting gates, for their loss"
    torch.testing.assert_close(att.sum((3, 4)), torch.ones(3, 4, 4))
    padded = {**x, "candidates": torch.nn.functional.pad(x["candidates"], (0, 3))}
    torch.testing.assert_close(net(**padded)[0], scores)
    alone = net(x["features"][1:2], x["question"][2:3], x["question_len"][2:3], x["candidates"][2:3],
                x["candidate_len"][2:3])[0]  # fmt: skip
    torch.testing.assert_close(alone, scores[2:3], rtol=1e-5, atol=1e-6)


def test_a_longer_answers_maps_past_its_end_repeat_its_own_mean() -> None:
    att = torch.rand(2, 4, 6).softmax(-1)
    out = mean_past_end(att, torch.tensor([2, 4]))
    torch.testing.assert_close(out[0, 2:], att[0, :2].mean(0).expand(2, 6))
    torch.testing.assert_close(out[1], att[1])
    torch.testing.assert_close(out.mean(1)[0], att[0, :2].mean(0)), "a mean over T is the mean over its steps"


def test_beam_search_scores_are_the_teacher_forced_scores(net) -> None:
    x = inputs(1)
    words, scores = net.generate(x["features"], x["question"], x["question_len"], x["image_index"], k=3, max_words=4)
    assert words.shape[:2] == (3, 3) and words.shape[2] <= 5
    assert (scores[:, :-1] >= scores[:, 1:]).all(), "best first"
    lengths = (words != 0).sum(2)
    assert (lengths >= 1).all() and not (words == 1).any(), "never empty, never [UNK]"
    assert all(len(set(map(tuple, w.tolist()))) == 3 for w in words), "k different answers"
    again = net(x["features"], x["question"], x["question_len"], words, lengths, x["image_index"])[0]
    torch.testing.assert_close(again, scores, rtol=1e-5, atol=1e-5)


def test_the_loss_is_the_answers_nll_plus_the_ranking_term(net) -> None:
    scores = torch.tensor([[-1.0, -2.0, -3.0, -4.0]])
    label = torch.tensor([1])
    assert net.answer_loss(scores, label, 0.0).item() == pytest.approx(2.0)
    ce = torch.nn.functional.cross_entropy(scores, label).item()
    assert net.answer_loss(scores, label, 0.5).item() == pytest.approx(2.0 + 0.5 * ce)


def test_gradients_reach_every_part(net) -> None:
    net.train()
    x = inputs()
    scores, _, (gates, _) = net(**x, with_aux=True)
    (net.answer_loss(scores, torch.tensor([0, 1, 2]), 1.0) + gates.sigmoid().mean()).backward()
    silent = [n for n, p in net.named_parameters() if (p.grad is None or not p.grad.abs().sum())
              and not n.endswith("att_w.bias")]  # a bias added to every cell's logit: the softmax ignores it
    assert silent == [], silent


@pytest.mark.parametrize(("changes", "message"), [
    ({"task": "pointing"}, "pointing's answers are boxes"),
    ({"variant": "blind"}, "model.variant=blind is a baseline of the score head"),
])  # fmt: skip
def test_what_the_decoder_cannot_serve_is_refused_by_name(changes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(model_spec(head="decoder", **changes))
