"""The word evidence (``vqa/model/evidence.py``): the candidate whose words meet the question's on one cell wins,
the matching logits contrast a batch's images, counting counts objects (peaks), not the cells they cover."""

from __future__ import annotations

import math

import torch
from torch import nn

from vqa.model.evidence import BoxEvidence, CountEvidence, WordEvidence, Zero, box_shares, matching_loss

D = 4  # cell / key size: one direction per "visual attribute"


def evidence() -> tuple[WordEvidence, nn.Embedding]:
    """Words 2, 3, 4 name attributes 0, 1, 2 (word 5 names nothing); a cell's key is its attributes (tanh of 5)."""
    ev = WordEvidence(D, D, Zero())
    embed = nn.Embedding(6, D, padding_idx=0)
    with torch.no_grad():
        embed.weight.zero_()
        for word, attribute in ((2, 0), (3, 1), (4, 2), (5, 3)):
            embed.weight[word, attribute] = 1.0
        ev.key.weight.copy_(5 * torch.eye(D))
        ev.key.bias.zero_()
        ev.word.weight.copy_(20 * math.sqrt(D) * torch.eye(D))  # a seen word adds 20 to its cells' evidence
        ev.names.weight.copy_(torch.tensor([[10.0, 10.0, 10.0, -10.0]]))  # word 5 names nothing one can see
        ev.names.bias.zero_()
    return ev, embed


def cells(*attributes: tuple[int, ...]) -> torch.Tensor:
    """[1, N, D]: one cell per tuple, holding those attributes (keys near 1 on them, 0 elsewhere)."""
    out = torch.zeros(1, len(attributes), D)
    for n, attrs in enumerate(attributes):
        out[0, n, list(attrs)] = 1.0
    return out


def test_the_candidate_whose_words_meet_the_questions_on_one_cell_wins() -> None:
    """"What colour is the [A]?" with candidates [B] and [C]: both are seen in the image, but only B on the same
    cell as A. Presence alone cannot tell them apart; the best cell for question *and* candidate does."""
    ev, embed = evidence()
    image = cells((0, 1), (2,), (0,), ())  # A and B on cell 0, C alone on cell 1, A alone on cell 2
    question = torch.tensor([[2, 5, 0]])  # A, a word that names nothing, padding
    candidates = torch.tensor([[[3], [4]]])  # [1, K=2, 1]: B, C
    out = ev(embed, image, question, candidates, None)
    assert out.score.shape == (1, 2) and out.score[0, 0] > out.score[0, 1] + 10
    assert out.question.shape == (1, 4, 1) and out.candidates.shape == (1, 2, 4, 1)
    assert int(out.question[0, :, 0].argmax()) in (0, 2), "the question's words are seen where A is"
    assert int(out.candidates[0, 0, :, 0].argmax()) == 0, "question and B meet on cell 0"
    assert out.matching is None, "the matching logits only when asked (training)"


def test_matching_contrasts_the_batch_images_and_teaches_every_word_part() -> None:
    """The true answer's evidence is higher on its own image, where its words are seen, than on an image without
    them; the matching loss alone reaches the keys, the words and how much a word names (first-order)."""
    ev, embed = evidence()
    images = torch.cat([cells((0, 1), (2,)), cells((2,), (3,))])  # image 0 shows A+B; image 1 shows C and D
    question, candidates = torch.tensor([[2], [4]]), torch.tensor([[[3], [4]], [[4], [2]]])  # [B=2, K=2, 1]
    image_index = torch.tensor([0, 1])
    out = ev(embed, images, question, candidates, image_index, matching=True)
    assert out.matching.shape == (2, 2, 2), "[B, K, I]"
    assert out.matching[0, 0, 0] > out.matching[0, 0, 1], "A + B on image 0, not on image 1"
    loss = matching_loss(out.matching, torch.tensor([0, 0]), image_index)
    assert loss < math.log(2)
    torch.manual_seed(0)  # from a model's start: the matching loss alone reaches every part of the evidence
    fresh, words = WordEvidence(D, D, Zero()), nn.Embedding(6, D, padding_idx=0)
    matching_loss(fresh(words, images, question, candidates, image_index, True).matching, torch.tensor([0, 0]),
                  image_index).backward()  # fmt: skip
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fresh.parameters())
    one = ev(embed, images[:1], question, candidates, torch.tensor([0, 0]), True).matching
    assert matching_loss(one, torch.tensor([0, 0]), torch.tensor([0, 0])) == 0, "one image: nothing to contrast"


def test_counting_counts_objects_not_cells() -> None:
    """Two objects on a 6 x 6 grid, one covering 2 x 2 cells and one a single cell: the count is 2 (one peak
    each), and the candidate naming 2 scores best."""
    torch.manual_seed(0)
    count = CountEvidence(D, D, (6, 6))
    embed = nn.Embedding(6, D, padding_idx=0)
    eq = torch.full((1, 6, 6), -20.0)
    eq[0, 1:3, 1:3] = torch.tensor([[20.0, 19.0], [19.5, 19.2]])  # one object on 4 cells
    eq[0, 4, 4] = 20.0  # another on one cell
    with torch.no_grad():
        count.center.weight.zero_()
        count.center.bias.zero_()
        count.asks.bias.fill_(5.0)  # the question asks a number
        count.number.weight.zero_()
        embed.weight.zero_()
        embed.weight[2:5, 0] = torch.tensor([1.0, 2.0, 3.0])  # words 2, 3, 4 name 1, 2, 3
        count.number.weight[0, 0] = 1.0
        count.number.bias.zero_()
    question, candidates = torch.tensor([[5]]), torch.tensor([[[2], [3], [4]]])
    scores = count(embed, torch.zeros(1, 36, D), eq.view(1, 36), question, candidates, None)
    assert scores.shape == (1, 3) and int(scores.argmax()) == 1
    assert scores[0, 1] > -0.01, "a count of 2, exactly"
    three = eq.clone()
    three[0, 0, 5] = 20.0  # a third object on another image
    matching = count.matching(embed, torch.zeros(2, 36, D), torch.stack([eq, three], 1).view(1, 2, 36), question,
                              candidates)  # fmt: skip
    assert matching.shape == (1, 3, 2), "[B, K, I]: each candidate's number against each image's count"
    assert matching[0, 1, 0] > matching[0, 1, 1] and matching[0, 2, 1] > matching[0, 2, 0], "2 here, 3 there"


def test_box_evidence_picks_the_box_where_the_questions_words_are_seen() -> None:
    """Pointing: "Which is the [A]?" with two candidate boxes on a 2 x 2 grid, A seen on the top-left cell only: the
    box over it wins against a larger box beside it; the matching logits contrast the same box across images; the
    question's evidence (for the glimpse that finds what a relation names) is where A is."""
    ev, embed = evidence()
    boxed = BoxEvidence(D, D, (2, 2))
    boxed.load_state_dict(ev.state_dict(), strict=False)  # the same keys, words and names as the word evidence
    image = torch.cat([cells((0,), (1,), (1,), (1,)), cells((1,), (1,), (1,), (1,))])  # A top-left on image 0 only
    boxes = torch.tensor([[[0.0, 0.0, 0.4, 0.4], [0.5, 0.0, 1.0, 1.0]]])  # [1, K=2, 4]: top-left; right half
    shares = box_shares(boxes, (2, 2))
    assert torch.allclose(shares[0, 0], torch.tensor([0.64, 0.0, 0.0, 0.0]))
    assert torch.allclose(shares[0, 1], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    out = boxed(embed, image, torch.tensor([[2]]), torch.ones(1, 2, 1, dtype=torch.long), torch.tensor([0]), True,
                boxes)  # fmt: skip
    assert out.score.shape == (1, 2) and out.score[0, 0] > out.score[0, 1] + 5
    assert out.matching.shape == (1, 2, 2) and out.matching[0, 0, 0] > out.matching[0, 0, 1] + 5
    assert out.question.shape == (1, 4, 1) and int(out.question[0, :, 0].argmax()) == 0, "A is seen top-left"
    assert out.candidates == 0.0, "the candidates' glimpses are left to the boxes' own parts"
