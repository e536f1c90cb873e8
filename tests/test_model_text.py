"""The text parts (``vqa/model/text.py``): a sequence's vector never depends on the padding around it."""

from __future__ import annotations

import pytest
import torch
from conftest import model_spec
from torch import nn

from vqa.model import TextEncoder
from vqa.model.text import MeanAnswerEncoder, NoQuestion


@pytest.mark.parametrize(("kind", "bidirectional"), [("lstm", False), ("gru", False), ("lstm", True)])
@pytest.mark.parametrize("lengths", [[5, 4, 3, 5], [8, 1, 1, 2]], ids=["padded path", "packed path"])
def test_text_encoder_state_is_that_of_the_unpadded_sequence(kind: str, bidirectional: bool,
                                                             lengths: list[int]) -> None:  # fmt: skip
    """Whether the batch runs padded or packed, each sequence's vector is its final state without any padding."""
    torch.manual_seed(0)
    enc = TextEncoder(kind, 6, 5, bidirectional).eval()
    emb = torch.randn(len(lengths), max(lengths), 6)
    with torch.no_grad():
        batched = enc(emb, torch.tensor(lengths))
        alone = torch.cat([enc(emb[i : i + 1, :n], torch.tensor([n])) for i, n in enumerate(lengths)])
    torch.testing.assert_close(batched, alone)


def test_mean_answer_is_the_mean_of_its_words_without_padding() -> None:
    torch.manual_seed(0)
    embed = nn.Embedding(10, 4, padding_idx=0)
    enc = MeanAnswerEncoder(model_spec(10, (8, 2, 2), embed_dim=4)).eval()
    candidates = torch.tensor([[[3, 5, 0, 0], [7, 0, 0, 0]]])  # [B=1, K=2, La=4]
    with torch.no_grad():
        a = enc(embed, candidates, torch.tensor([[2, 1]]))
        torch.testing.assert_close(a[0, 0], embed.weight[[3, 5]].mean(0))
        torch.testing.assert_close(a[0, 1], embed.weight[7])


def test_no_question_is_an_empty_vector_per_question() -> None:
    q = NoQuestion()(nn.Embedding(10, 4), torch.ones(3, 7, dtype=torch.long), torch.full((3,), 7))
    assert q.shape == (3, 0) and q.dtype == torch.float32
