"""What a Visual7W task is made of, for the rest of the code to ask.

Telling and pointing share the file layout, the four-candidate protocol, the tie rule and the results format; they
differ in what a candidate is (an answer string or a box), how their files are parsed, where grounding comes from,
what the blind baseline is, and what a report draws. Each task module answers those questions once, and nothing
else in ``vqa/`` asks which task it is: a third task is one new module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..boxes import Box
from ..visual7w import QA, Visual7W
from ...common.errors import ConfigError
from ...model import ModelSpec, VQAModel
from ...model.decoder import DecoderNet
from ...model.parts import CandidateParts


class Task(ABC):
    """The interface; ``telling.Telling`` and ``pointing.Pointing`` fill it in (the abstract methods each task
    must answer; the others have the answer of a task whose candidates are text)."""

    name: str
    types: tuple[str, ...]  # the question types its files may hold
    reads_candidates: bool  # whether the model reads the candidates' words (the tokenizer learns them)
    baseline_label: str  # what ``prior_baseline`` measures, for people
    parts: CandidateParts  # what a candidate is to the model (``vqa/model/parts.py``)
    auto_attention: str  # the attention form ``model.attention=auto`` picks for this task
    answers_open: bool  # whether the toolkit's open-ended protocol applies (answers that can be written)
    choice_words: str  # what a person gives as choices, for messages ("candidate answers", "boxes ...")
    example_choices: tuple[str, ...]  # two choices as typed (``parse_choice``): a warm-up question, a usage line

    @abstractmethod
    def load(self, annotations: str | Path, images: str | Path) -> Visual7W:
        """Load and validate the task's annotation file; filenames are resolved inside ``images``."""

    @abstractmethod
    def grounding(self, path: str | Path | None, dataset: Visual7W) -> dict[int, list[Box]] | None:
        """Grounding boxes by qa_id (where the answer is in the image), or None when the task has none."""

    def check_images(self, dataset: Visual7W) -> None:
        """Checks that need the images' sizes (file headers), run before features are extracted: none for a task
        whose candidates are text."""
        return None

    @abstractmethod
    def candidate_tokens(self, tokenizer: Any, qas: Sequence[QA], max_len: int) -> list[list[int]]:
        """Token ids of every candidate, the QAs' K candidates in turn (answer first)."""

    def candidate_columns(self, dataset: Visual7W, qas: Sequence[QA]) -> dict[str, list[Any]]:
        """Per-candidate inputs beyond the tokens, a column per input (``[len(qas)][K][...]``); the loader hands
        each to the model under its column's name."""
        return {}

    @abstractmethod
    def encode_choices(self, tokenizer: Any, images: Sequence[Any], choices: Sequence[Sequence[Any]], max_len: int,
                       ) -> tuple[list[list[int]], dict[str, torch.Tensor]]:  # fmt: skip
        """A user's choices for new images (``vqa.Predictor``): token ids of every choice, the model's extra
        inputs. The same encoding ``candidate_tokens`` and ``candidate_columns`` give the dataset's candidates."""

    def parse_choice(self, text: str) -> Any:
        """One choice as typed on the command line -> what ``vqa.Predictor.predict`` takes."""
        return text

    def choice_boxes(self, dataset: Visual7W, qa: QA) -> list[Box] | None:
        """The box each candidate is (drawn on its panel by the reports), or None when candidates are text."""
        return None

    def drawn_boxes(self, choices: Sequence[Any]) -> list[Box] | None:
        """The boxes a user's choices (``parse_choice``'s) are, to draw on the image; None when they are text."""
        return None

    def result_answer(self, candidate: str) -> Any:
        """A candidate as the toolkit's results file writes it."""
        return candidate

    @abstractmethod
    def prior_baseline(self, dataset: Visual7W, train: Sequence[QA], test: Sequence[QA]) -> dict[str, Any]:
        """What a model that never sees the image gets for free: fit on ``train``, scored on ``test``."""

    def check_model(self, model: Any) -> str | None:
        """Why the model (``cfg.model`` or a ``ModelSpec``) cannot serve this task (None when it can)."""
        if model.head == "decoder" and model.variant != "attention":
            return (f"model.head=decoder reads the question and attends to the image: model.variant={model.variant} "
                    "is a baseline of the score head (use model.head=score with it)")
        return None

    # ------------------------------------------------------------------------------------------------ the model
    def question_glimpses(self, model: Any) -> int:
        """How many glimpses driven by the question alone the model gets (``model.question_glimpses``)."""
        return model.question_glimpses

    def model_spec(self, cfg: Any, vocab_size: int, grid: tuple[int, int, int]) -> ModelSpec:
        """``cfg.model`` resolved for this task: ``auto`` attention, question glimpses."""
        attention = self.auto_attention if cfg.model.attention == "auto" else cfg.model.attention
        return ModelSpec.from_config(cfg, vocab_size, grid, self.name, attention, self.question_glimpses(cfg.model))

    def build_model(self, spec: ModelSpec) -> VQAModel:
        """The network of ``spec`` with this task's candidate parts (refused when the spec cannot serve it)."""
        problem = self.check_model(spec)
        if problem:
            raise ConfigError(problem)
        return DecoderNet(spec) if spec.head == "decoder" else VQAModel(spec, self.parts)
