"""The attention parts (``vqa/model/attention.py``): shared grids, the factorised bilinear form."""

from __future__ import annotations

import torch

from vqa.model import per_image_bmm
from vqa.model.attention import AdditiveGlimpses, BilinearGlimpses, CountingHeads, Heads


def test_per_image_bmm_multiplies_each_question_by_its_own_image() -> None:
    torch.manual_seed(0)
    images, rows = torch.randn(3, 5, 4), torch.randn(6, 2, 4)  # [I, P, D], [B, R, D]
    index = torch.tensor([2, 0, 2, 1, 2, 0])  # image 2 has three questions, not next to each other
    expected = torch.bmm(images[index], rows.transpose(1, 2))  # [B, P, R]
    torch.testing.assert_close(per_image_bmm(images, rows, index), expected)
    torch.testing.assert_close(per_image_bmm(images[index], rows, None), expected)


def test_bilinear_logits_are_the_factorised_mlb_attention() -> None:
    """logits_kn = W (tanh(P v_n) * tanh(s_k)) + b, computed as one GEMM per question without the [B, K, N, D]
    hidden state; with shared grids (image_index) each question reads its own image's cells."""
    torch.manual_seed(0)
    glimpses = BilinearGlimpses(10, 24, CountingHeads(10, 2))
    proj, s = torch.randn(2, 12, 10), torch.randn(3, 4, 10)  # [I, N, D], [B, K, D]
    index = torch.tensor([1, 0, 1])
    weight, bias = glimpses.heads.weight_and_bias()  # [2G, D]: attention and counting heads
    assert weight.shape == (4, 10)
    hidden = torch.tanh(proj[index]).unsqueeze(1) * torch.tanh(s).unsqueeze(2)  # [B, K, N, D]
    torch.testing.assert_close(glimpses.logits(proj, s, index), hidden @ weight.T + bias)
    torch.testing.assert_close(glimpses.logits(proj[index], s, None), hidden @ weight.T + bias)


def test_counting_heads_split_attention_from_gate_logits() -> None:
    """Both forms give [B, K, N, G] attention logits, and [B, K, N, G] gate logits only with the counting heads."""
    torch.manual_seed(0)
    cells, s = torch.randn(2, 12, 10), torch.randn(2, 4, 24)  # [I, N, D], [B, K, Dq+Da]
    for form in (AdditiveGlimpses, BilinearGlimpses):
        _, logits, gates = form(10, 24, Heads(10, 3))(cells, s, None, None, 0.0)
        assert logits.shape == (2, 4, 12, 3) and gates is None
        glimpses = form(10, 24, CountingHeads(10, 3))
        _, logits, gates = glimpses(cells, s, None, None, 0.0)
        assert logits.shape == gates.shape == (2, 4, 12, 3)
        assert gates.mean() < logits.mean(), "gates start near sigmoid(-4): most cells hold nothing"
        evidence = torch.randn(2, 4, 12, 1)  # where the words are seen: added to every head's logits
        _, moved, _ = glimpses(cells, s, None, None, evidence)
        torch.testing.assert_close(moved, logits + evidence)
