"""``VQAModel``: the parts, chosen once when the model is built, and the one path every batch takes through them.

Which parts (``ModelSpec``):
    question     ``QuestionEncoder``, or ``NoQuestion`` for the variants that never read it
    candidates   the task's ``CandidateParts`` (``parts.py``): text (telling) or boxes (pointing), and what they
                 change in the look and the scorer
    grid         ``GridCells``, or ``NoGrid`` for the variants that never see the image
    evidence     ``WordEvidence`` (where each word is seen: a score term, and logits for the glimpses), or
                 ``NoEvidence``: the task's candidate parts choose it
    look         ``Look`` (attention, image_only), ``MeanLook`` (no_attention), ``NoLook`` (blind, answer_only)
    scorer       ``Scorer``

``forward`` holds no ``if`` on the variant, the task, the attention form or counting: a setting that changes
the computation changes which part sits in a slot. Nothing is cached on ``self`` during ``forward``: the same
module serves training, evaluation and inspection.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import (
    AdditiveGlimpses,
    BilinearGlimpses,
    CountingHeads,
    CountingQuestionGlimpses,
    Heads,
    NoQuestionGlimpses,
    QuestionGlimpses,
    additive_seek,
    bilinear_seek,
)
from .grid import GridCells, NoGrid
from .looks import Count, Look, MeanLook, NoLook
from .noop import Keep
from .parts import CandidateParts
from .scorer import Scorer
from .spec import ModelSpec
from .text import NoQuestion, QuestionEncoder


class Aux(NamedTuple):
    """What the training losses beyond the answer's read from a forward pass (``with_aux=True``)."""

    gates: torch.Tensor | None  # [B, K, H*W, G] counting-gate logits (None: no counting path): the box losses
    matching: torch.Tensor | None  # [B, K, I] word evidence on every image of the batch (None: no evidence)


def build_look(spec: ModelSpec, q_dim: int, a_dim: int, parts: CandidateParts) -> nn.Module:
    """The look of ``spec.variant``, its parts chosen by the candidates (``parts``), attention form, question
    glimpses and counting."""
    if not spec.sees_image:
        return NoLook(spec)
    if not spec.attends:
        return MeanLook(spec)
    d, g, bilinear = spec.attention_dim, spec.glimpses, spec.attention == "bilinear"
    gq = spec.question_glimpses if q_dim else 0  # the question's own glimpses need a question
    heads = CountingHeads(d, g) if spec.count and not gq else Heads(d, g)  # with gq, those glimpses are counted
    form = parts.form or (BilinearGlimpses if bilinear else AdditiveGlimpses)
    seeker = CountingQuestionGlimpses if spec.count else QuestionGlimpses
    question = seeker(q_dim, d, gq, bilinear_seek if bilinear else additive_seek) if gq else NoQuestionGlimpses()
    count = Count(gq or g, d) if spec.count else Keep()
    return Look(form(d, q_dim + a_dim, heads), parts.offsets(spec), parts.relations(g, q_dim, d), question, count,
                d, g)  # fmt: skip


class VQAModel(nn.Module):
    """Scores each (image, question, candidate): question and candidates encoded, the grid looked at, scored."""

    def __init__(self, spec: ModelSpec, parts: CandidateParts) -> None:
        """``parts``: what the task's candidates are (``vqa.tasks``: ``Task.build_model`` chooses them)."""
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(spec.vocab_size, spec.embed_dim, padding_idx=0)  # shared by question, answers
        self.question = QuestionEncoder(spec) if spec.reads_question else NoQuestion()
        self.candidates = parts.encoder(spec)
        self.grid = GridCells(spec) if spec.sees_image else NoGrid()
        self.evidence = parts.evidence(spec)  # where the words are seen (in the candidates' words or boxes), or nothing
        self.look = build_look(spec, self.question.out_dim, self.candidates.out_dim, parts)
        asked = parts.asked(self.question.out_dim, self.candidates.out_dim, spec.hidden_dim)
        self.scorer = Scorer(spec, self.look.out_dim, self.question.out_dim, self.candidates.out_dim, asked)

    def forward(
        self, features: torch.Tensor, question: torch.Tensor, question_len: torch.Tensor, candidates: torch.Tensor,
        candidate_len: torch.Tensor, image_index: torch.Tensor | None = None, with_aux: bool = False,
        boxes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """features [I, C, H, W], question [B, Lq], question_len [B], candidates [B, K, La], candidate_len [B, K],
        image_index [B] (question b asks about image image_index[b]; None: I = B, one image per question)
        -> scores [B, K], attention [B, K, G, H, W] (uniform for the variants that do not attend), and with
        ``with_aux`` what the training losses beyond the answer's read (``Aux``).
        Pointing: ``boxes`` [B, K, 4] are the candidates (``candidates`` holds one [UNK] each and is not read).

        Why ``image_index``: Visual7W asks 4.9 questions per train image (the demo 4-5); projecting each image's grid
        once and broadcasting it to its questions saves the largest GEMM of the step and the store reads.
        """
        b, k = candidates.shape[:2]
        _, h, w = self.spec.grid
        q = self.question(self.embed, question, question_len)  # [B, Dq] ([B, 0]: never read)
        cells = self.grid(features)  # [I, H*W, D] (None: never sees the image)
        seen = self.evidence(self.embed, cells, self.question.words(question), candidates, image_index, with_aux,
                             boxes)  # fmt: skip
        a = self.candidates(self.embed, candidates, candidate_len, boxes, cells, image_index)  # [B, K, Da]
        qk = q.unsqueeze(1).expand(-1, k, -1)  # [B, K, Dq]: the question, once per candidate
        ctx, att, gates = self.look(cells, q, qk, a, boxes, image_index, seen)  # [B, K, C], [B, K, H*W, G], gates
        scores = (self.scorer(ctx, qk, a) + seen.score).float()  # [B, K]
        attention = att.permute(0, 1, 3, 2).reshape(b, k, -1, h, w).float()  # [B, K, G, H, W]
        return (scores, attention, Aux(gates, seen.matching)) if with_aux else (scores, attention)

    @staticmethod
    def answer_loss(scores: torch.Tensor, label: torch.Tensor, ranking: float) -> torch.Tensor:
        """Cross-entropy over the candidates' scores (``ranking`` is the decoder head's)."""
        return F.cross_entropy(scores, label)


def init_embedding(model: VQAModel, vectors: torch.Tensor, found: torch.Tensor) -> None:
    """Copy pretrained vectors into the embedding for the words that have one; the rest keep their random init."""
    with torch.no_grad():
        model.embed.weight[found] = vectors[found].to(model.embed.weight.dtype)
        model.embed.weight[0].zero_()  # PAD
