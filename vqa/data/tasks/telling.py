"""Visual7W telling: the candidates are answer strings ("what", "where", "when", "who", "why", "how").

Grounding, when given, comes from the separate ``v7w_telling_answers.json`` (``data.grounding``); the blind
baseline is the most frequent training answer among the four.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..boxes import Box
from ..visual7w import QA, QUESTION_TYPES, Visual7W, load_annotations, parse_images, text_problem
from ...common.errors import VQAError
from ..grounding import load_grounding
from ...model.parts import TEXT
from ...evaluation.scoring import answer_prior_baseline
from ..words import token_ids
from .base import Task


class Telling(Task):
    name = "telling"
    types = QUESTION_TYPES
    reads_candidates = True
    baseline_label = "blind answer-frequency baseline"
    parts = TEXT
    auto_attention = "bilinear"  # the cheaper form (``vqa/model/attention.py``), as good on telling
    answers_open = True
    choice_words = "candidate answers"
    example_choices = ("Yes.", "No.")

    def load(self, annotations: str | Path, images: str | Path) -> Visual7W:
        return load_telling(annotations, images)

    def grounding(self, path: str | Path | None, dataset: Visual7W) -> dict[int, list[Box]] | None:
        return load_grounding(path) if path else None

    def candidate_tokens(self, tokenizer: Any, qas: Sequence[QA], max_len: int) -> list[list[int]]:
        return token_ids(tokenizer, [c for q in qas for c in q.candidates], max_len)

    def encode_choices(self, tokenizer: Any, images: Sequence[Any], choices: Sequence[Sequence[Any]], max_len: int,
                       ) -> tuple[list[list[int]], dict[str, torch.Tensor]]:  # fmt: skip
        for cs in choices:
            bad = [c for c in cs if not isinstance(c, str)]
            if bad:
                raise VQAError(f"a telling run's choices are answer strings, got {bad[0]!r}")
        return token_ids(tokenizer, [c for cs in choices for c in cs], max_len), {}

    def prior_baseline(self, dataset: Visual7W, train: Sequence[QA], test: Sequence[QA]) -> dict[str, Any]:
        return answer_prior_baseline(train, test)


def text_candidates(raw: dict[str, Any], where: str) -> tuple[tuple[Any, tuple[Any, ...]] | None, list[str]]:
    """Telling's candidate rule: the answer and 3 distractors are non-empty strings, distinct after lowercasing."""
    problems = [f"{where}: {p}" for p in [text_problem(raw["answer"], "answer")] if p]
    choices = raw["multiple_choices"]
    for i, c in enumerate(choices):
        p = text_problem(c, f"multiple_choices[{i}]")
        if p:
            problems.append(f"{where}: {p}")
    if problems:
        return None, problems
    answer = raw["answer"].strip().lower()
    lowered = [c.strip().lower() for c in choices]
    if answer in lowered:
        problems.append(f"{where}: the answer {raw['answer']!r} is also among the distractors")
    dupes = sorted(c for c, n in Counter(lowered).items() if n > 1)
    if dupes:
        problems.append(f"{where}: duplicate distractors after lowercasing: {dupes}")
    return (None if problems else (raw["answer"], tuple(choices))), problems


def parse_telling(data: Any, image_dir: str | Path) -> Visual7W:
    """Validate a parsed ``dataset_v7w_telling.json``; raise DatasetError listing every bad record."""
    return parse_images(data, image_dir, text_candidates, QUESTION_TYPES, "Visual7W annotations")


def load_telling(annotations: str | Path, image_dir: str | Path) -> Visual7W:
    """Load and validate ``dataset_v7w_telling.json``; filenames are resolved inside ``image_dir``."""
    return load_annotations(annotations, image_dir, parse_telling, "Visual7W annotations")
