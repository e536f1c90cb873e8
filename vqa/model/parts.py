"""The slots a task fills: what a candidate is, and what that changes in the look and the scorer.

A task (``vqa.tasks``) builds the model with one ``CandidateParts``: telling's candidates are text (``TEXT``);
pointing's are boxes on the grid (``BOXES``), which also place every cell relative to the box inside the additive
attention, add where each glimpse lies from the box ("left of the X"), and compare what the question asks for with
the box. Evidence (``evidence.py``) is where the question's and each candidate's words are seen (text), or where
the question's words are seen inside each candidate box (boxes). The model itself never asks which task it serves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .attention import BoxGlimpses
from .evidence import BoxEvidence, CountEvidence, NoEvidence, WordEvidence, Zero
from .grid import BoxCandidates
from .looks import BoxOffsets, NoOffsets, Relations, RelationsAndPlace
from .noop import Empty, Keep
from .scorer import Compare
from .spec import ModelSpec
from .text import AnswerEncoder, MeanAnswerEncoder


@dataclass(frozen=True)
class CandidateParts:
    encoder: Callable[[ModelSpec], nn.Module]  # candidates [B, K, ..] -> a [B, K, Da]
    form: type | None  # the glimpse form the candidates need; None: the spec's (``model.attention``)
    offsets: Callable[[ModelSpec], nn.Module]  # candidate -> where every cell lies from it (or nothing)
    relations: Callable[[int, int, int], nn.Module]  # (glimpses, q_dim, attention_dim) -> added to the context
    asked: Callable[[int, int, int], nn.Module]  # (q_dim, a_dim, hidden) -> the question against the candidate
    evidence: Callable[[ModelSpec], nn.Module]  # where the words are seen (``evidence.py``), or nothing


def text_encoder(spec: ModelSpec) -> nn.Module:
    """Answers are short phrases: an RNN over their words, or the mean of their word vectors."""
    return AnswerEncoder(spec) if spec.answer_encoder == "rnn" else MeanAnswerEncoder(spec)


def word_evidence(spec: ModelSpec) -> nn.Module:
    """Text candidates are words: where each is seen, for the variants that attend (``model.evidence``)."""
    if not (spec.evidence and spec.attends):
        return NoEvidence()
    count = CountEvidence(spec.embed_dim, spec.attention_dim, spec.grid[1:]) if spec.count else Zero()
    return WordEvidence(spec.embed_dim, spec.attention_dim, count)


def box_evidence(spec: ModelSpec) -> nn.Module:
    """Box candidates hold image content: where the question's words are seen inside each box
    (``model.evidence``); without a question (image_only) there is nothing to look for."""
    if not (spec.box_evidence and spec.attends and spec.reads_question):
        return NoEvidence()
    return BoxEvidence(spec.embed_dim, spec.attention_dim, spec.grid[1:])


def no_offsets(spec: ModelSpec) -> nn.Module:
    return NoOffsets()


def no_relations(glimpses: int, q_dim: int, d: int) -> nn.Module:
    return Keep()


def no_comparison(q_dim: int, a_dim: int, hidden: int) -> nn.Module:
    return Empty()


def box_offsets(spec: ModelSpec) -> nn.Module:
    return BoxOffsets(spec.grid[1:])


def box_relations(glimpses: int, q_dim: int, d: int) -> nn.Module:
    """Where each glimpse lies from the box; with the question read, also where the thing it names lies."""
    return RelationsAndPlace(glimpses, q_dim, d) if q_dim else Relations(glimpses, d)


def question_against_box(q_dim: int, a_dim: int, hidden: int) -> nn.Module:
    """The candidate *is* image content (its box), so what the question asks for is compared with it."""
    return Compare(q_dim, a_dim, hidden) if q_dim else Empty()


TEXT = CandidateParts(text_encoder, None, no_offsets, no_relations, no_comparison, word_evidence)
BOXES = CandidateParts(BoxCandidates, BoxGlimpses, box_offsets, box_relations, question_against_box, box_evidence)
