"""``vqa.Predictor``: a trained run as a Python object. Load it once, then ask about any image.

    from vqa import Predictor
    p = Predictor.from_run("runs/default")
    r = p.predict("photo.jpg", "What color is the circle?", ["Red.", "Blue.", "Green.", "White."])
    r.answer, r.probabilities, r.attention        # the choice, [K] in your order, [K, H, W]

    # a pointing run (data.task=pointing): the choices are boxes (x, y, width, height) in the image's pixels
    r = Predictor.from_run("runs/pointing").predict("photo.jpg", "Which object is red?", [(10, 20, 50, 40), ...])

Why a class: the CLI pays 15-20 s of start-up for every question (imports, backbone, checkpoint); a notebook or a
service pays it once. The image goes through the run's own backbone and preprocessing (both read from the feature
manifest, like ``make eval``'s features), and the text through the run's tokenizer, so a question about a dataset
image gets the choice ``make eval`` makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from .common.errors import VQAError
from .config import load_config
from .data.loader import dedupe, pad
from .data.tasks import task_of
from .data.words import answer_steps, token_ids
from .evaluation.calibration import probabilities, temperature_of
from .evaluation.open_ended import Generated, generate_with_maps
from .evaluation.scoring import choose
from .features.backbones import build_backbone
from .features.extract import forward
from .features.images import BadImage, load_image, squash, to_tensor
from .features.store import load_manifest
from .run import as_run

ImageLike = Union[str, Path, Image.Image, np.ndarray]  # noqa: UP007 (a runtime alias, Python 3.10 included)


@dataclass(frozen=True)
class Prediction:
    """One question's answer; every per-choice array is in the caller's order of ``choices``."""

    question: str
    choices: list[Any]  # strings; pointing: (x, y, width, height) boxes
    scores: np.ndarray  # [K] raw scores
    probabilities: np.ndarray  # [K] softmax of the scores over the run's fitted temperature (sums to 1)
    attention_glimpses: np.ndarray  # [K, G, H, W]: each choice's attention over the grid, per glimpse
    best: int  # index of the chosen choice: highest score, a tie going to the first tied choice
    words: list[list[str]] | None = None  # decoder head: the steps each choice's maps belong to (its words, the end)

    @property
    def attention(self) -> np.ndarray:
        """[K, H, W]: each choice's attention, glimpses averaged (uniform for no_attention and blind runs); the
        decoder's: its words' maps averaged."""
        return self.attention_glimpses.mean(1)

    @property
    def attention_words(self) -> np.ndarray:
        """[K, T, H, W]: the decoder's map at each word of each choice (``words`` names them; the steps past a
        shorter choice's end repeat its mean map)."""
        if self.words is None:
            raise VQAError("per-word attention needs a run trained with model.head=decoder (this one scores)")
        return self.attention_glimpses

    @property
    def answer(self) -> str:
        return self.choices[self.best]


class Predictor:
    """A trained run's tokenizer, checkpoint and feature extractor, loaded once (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, backbone: Any, manifest: dict[str, Any], max_len: int,
                 device: torch.device, temperature: float = 1.0) -> None:  # fmt: skip
        self.model, self.tokenizer, self.backbone = model.to(device).eval(), tokenizer, backbone
        self.manifest, self.max_len, self.device = manifest, max_len, device
        self.temperature = temperature  # the checkpoint's, fitted on val (``calibration.py``)
        self.image_size = int(manifest["image_size"])
        self.task = task_of(model.spec.task)  # what a choice is: an answer string, or a box

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | torch.device | None = None,
                 checkpoint: str | None = None) -> Predictor:  # fmt: skip
        """The run in ``run_dir`` (its saved ``config.yaml``): ``eval.checkpoint`` weights unless ``checkpoint``
        (best | last | a folder) says otherwise, on ``device`` (default: the GPU if there is one)."""
        run = Path(run_dir)
        if not (run / "config.yaml").is_file():
            raise VQAError(f"{run} is not a run folder (no config.yaml): train first (`make train`)")
        overrides = [f"run.dir={run}"] + ([f"eval.checkpoint={checkpoint}"] if checkpoint else [])
        return cls.from_config(load_config(run / "config.yaml", overrides), device)

    @classmethod
    def from_config(cls, cfg: Any, device: str | torch.device | None = None) -> Predictor:
        """The run ``cfg.run.dir`` as ``cfg`` (or a ``Run``) describes it (``eval.checkpoint``, the feature store's
        manifest)."""
        run = as_run(cfg)
        model, meta, _, tokenizer = run.trained
        manifest = load_manifest(run.features_dir)
        backbone = None
        if model.spec.sees_image:
            if not manifest["pretrained"]:
                raise VQAError(f"the features in {run.features_dir} come from a randomly initialised backbone, "
                               "which cannot be rebuilt for a new image; extract with features.pretrained=true")
            weights = manifest["weights"] if Path(manifest["weights"]).is_file() else None
            backbone = build_backbone(manifest["backbone"], int(manifest["image_size"]), pretrained=True,
                                      weights=weights, hypercolumn=manifest.get("hypercolumn", []),
                                      space_to_depth=manifest.get("space_to_depth", []))  # fmt: skip
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if backbone is not None:
            backbone.module.to(dev, memory_format=torch.channels_last)
        return cls(model, tokenizer, backbone, manifest, run.cfg.text.max_len, dev, temperature_of(meta))

    # ------------------------------------------------------------------------------------------------ images
    def pixels(self, image: ImageLike) -> np.ndarray:
        """A path, PIL image or ``[H, W, 3]`` / ``[H, W]`` uint8 array -> ``[S, S, 3]`` uint8, as the store saw it.

        A JPEG given by its path is decoded exactly as the feature store's images were (at a reduced scale where
        it is much larger than S); an image already decoded in memory is resized from its full resolution, which
        can move scores slightly."""
        if isinstance(image, (str, Path)):
            try:
                return load_image(image, self.image_size)
            except BadImage as e:
                raise VQAError(f"{image}: {e}") from None
        if isinstance(image, np.ndarray):
            channels = image.shape[2] if image.ndim == 3 else 1
            if image.dtype != np.uint8 or image.ndim not in (2, 3) or channels not in (1, 3, 4):
                raise VQAError(f"an image array must be uint8 [H, W, 3], [H, W, 4] or [H, W]; got {image.dtype} "
                               f"{list(image.shape)}")  # fmt: skip
            image = Image.fromarray(image)
        if not isinstance(image, Image.Image):
            raise VQAError(f"image must be a path, a PIL image or a uint8 array, not {type(image).__name__}")
        return squash(image, self.image_size)

    def grids(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Images -> their feature grids ``[I, C, H, W]`` fp16 (one backbone pass for all of them)."""
        if self.backbone is None:  # blind: the image is never read
            return torch.zeros(len(images), 0)
        pixels = torch.stack([to_tensor(self.pixels(im)) for im in images])  # [I, 3, S, S] uint8
        return torch.from_numpy(forward(self.backbone, pixels, self.manifest["precision"], self.device))

    # ------------------------------------------------------------------------------------------------ answers
    def predict(self, image: ImageLike, question: str, choices: Sequence[Any]) -> Prediction:
        """Score ``choices`` (2 or more) for ``question`` about ``image``: answer strings, or for a pointing run
        boxes ``(x, y, width, height)`` in the image's own pixels (top-left origin, as the official files)."""
        return self.predict_batch([(image, question, choices)])[0]

    def predict_batch(self, items: Sequence[tuple[ImageLike, str, Sequence[Any]]]) -> list[Prediction]:
        """Many ``(image, question, choices)`` at once, each choice list of the same length; questions about the
        same image (the same path, or the same object) share one backbone pass."""
        if not items:
            return []
        k = len(items[0][2])
        for _, question, choices in items:
            _check(question, choices, k)
        return self._score(items)

    def _score(self, items: Sequence[tuple[ImageLike, str, Sequence[Any]]]) -> list[Prediction]:
        k = len(items[0][2])
        keys = [str(Path(im).resolve()) if isinstance(im, (str, Path)) else id(im) for im, _, _ in items]
        firsts, image_index = dedupe(keys)  # one grid per distinct image (the same file, or the same object)
        unique = [items[i][0] for i in firsts]
        q, q_len = pad(token_ids(self.tokenizer, [q for _, q, _ in items], self.max_len))  # [B, Lq], [B]
        b = len(items)
        tokens, extra = self.task.encode_choices(self.tokenizer, [im for im, _, _ in items],
                                                 [cs for _, _, cs in items], self.max_len)  # the make eval encoding
        c, c_len = pad(tokens)  # [B*K, Lc]
        extra = {name: value.to(self.device) for name, value in extra.items()}
        with torch.inference_mode():
            scores, attention = self.model(self.grids(unique).to(self.device), q.to(self.device),
                                           q_len, c.view(b, k, -1).to(self.device), c_len.view(b, k),
                                           image_index.to(self.device), **extra)  # fmt: skip
        return [self._prediction(question, list(choices), scores[n].float().cpu(), attention[n].cpu())
                for n, (_, question, choices) in enumerate(items)]  # fmt: skip

    def _prediction(self, question: str, choices: list[Any], scores: torch.Tensor,
                    attention: torch.Tensor) -> Prediction:  # fmt: skip
        values = scores.numpy()  # [K]
        decoder = self.model.spec.head == "decoder"
        words = [answer_steps(self.tokenizer, c, self.max_len) for c in choices] if decoder else None
        return Prediction(question, choices, values, probabilities(values, self.temperature), attention.numpy(),
                          choose([str(c) for c in choices], values.tolist()), words)  # fmt: skip

    def generate(self, image: ImageLike, question: str, k: int = 5) -> list[Generated]:
        """The decoder's ``k`` best answers to ``question`` about ``image`` (no candidates), best first, each with
        its probability and one attention map per word (beam search, as ``make eval ARGS="eval.mode=open"``)."""
        if self.model.spec.head != "decoder":
            raise VQAError("generate needs a run trained with model.head=decoder; a score head only ranks choices "
                           "(``predict``)")  # fmt: skip
        _check_question(question)
        q, q_len = pad(token_ids(self.tokenizer, [question], self.max_len))
        batch = {"features": self.grids([image]).to(self.device), "question": q.to(self.device),
                 "question_len": q_len, "image_index": None}  # fmt: skip
        with torch.inference_mode():
            return generate_with_maps(self.model, self.tokenizer, batch, k, self.max_len)[0]


def _check_question(question: str) -> None:
    if not isinstance(question, str) or not question.strip():
        raise VQAError(f"the question must be a non-empty string, got {question!r}")


def _check(question: str, choices: Sequence[str], k: int) -> None:
    _check_question(question)
    if isinstance(choices, str) or len(choices) < 2:
        raise VQAError(f"give a list of 2 or more choices, got {choices!r}")
    if len(choices) != k:
        raise VQAError(f"every question of a batch needs the same number of choices ({k}), got {len(choices)}")
    if len({str(c).strip().lower() for c in choices}) != len(choices):
        raise VQAError(f"the choices must differ (case-insensitively): {list(choices)}")
