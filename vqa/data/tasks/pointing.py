"""Visual7W pointing ("which" questions): the four candidates are image regions, not strings.

``dataset_v7w_pointing.json`` is the telling layout with box ids for ``answer`` and ``multiple_choices`` and a
top-level ``boxes`` list (``box_id``, ``name``, ``x``, ``y``, ``width``, ``height``: absolute pixels, top-left
origin; a few official boxes start at -1). A pointing QA is a ``data.QA`` whose candidates are the box ids as
strings, so the toolkit's string rule, the tie rule and the results file serve both tasks unchanged.

A box's ``name`` names the object it holds, often the answer itself ("Which cup is on the table?" -> "cup"): it
is kept for people (inspect) and never reaches the model, which sees the image and the box geometry only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from ..boxes import Box, clip
from ..visual7w import QA, Visual7W, is_int, load_annotations, parse_images
from ...common.errors import DatasetError, VQAError
from ...features.images import header_size
from ...model.parts import BOXES
from ..families import question_family
from .base import Task

POINTING_TYPES = ("which",)


def _check_box(raw: Any, index: int) -> tuple[Box | None, list[str]]:
    where = f"boxes[{index}]" + (f" (box_id {raw.get('box_id')})" if isinstance(raw, dict) else "")
    if not isinstance(raw, dict):
        return None, [f"{where}: a box must be an object, got {type(raw).__name__}"]
    missing = [k for k in ("box_id", "x", "y", "width", "height") if k not in raw]
    if missing:
        return None, [f"{where}: missing field '{k}'" for k in missing]
    if not is_int(raw["box_id"]):
        return None, [f"{where}: 'box_id' must be an integer, got {raw['box_id']!r}"]
    nums = [raw[k] for k in ("x", "y", "width", "height")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e9 for v in nums):
        return None, [f"{where}: x, y, width, height must be finite numbers, got {nums}"]
    x, w = clip(float(nums[0]), float(nums[2]))
    y, h = clip(float(nums[1]), float(nums[3]))
    if w <= 0 or h <= 0:
        return None, [f"{where}: the box is empty once clipped to the image (x, y, width, height = {nums})"]
    name = raw.get("name", "")
    if not isinstance(name, str):
        return None, [f"{where}: 'name' must be a string, got {type(name).__name__}"]
    return Box(raw["box_id"], name, x, y, w, h), []


def parse_boxes(data: Any) -> tuple[dict[int, Box], list[str]]:
    """The top-level ``boxes`` list by box_id, and every problem in it."""
    if not isinstance(data, dict) or not isinstance(data.get("boxes"), list):
        raise DatasetError("a pointing file must have a top-level 'boxes' list (box_id, name, x, y, width, height); "
                          "for a telling file set data.task=telling")
    regions: dict[int, Box] = {}
    problems: list[str] = []
    for i, raw in enumerate(data["boxes"]):
        region, found = _check_box(raw, i)
        problems += found
        if region is None:
            continue
        if region.id in regions:
            problems.append(f"boxes[{i}]: duplicate box_id {region.id}")
            continue
        regions[region.id] = region
    return regions, problems


def box_candidates(regions: dict[int, Box]) -> Any:
    """Pointing's candidate rule (see ``data._check_qa``): integer box ids that exist, all four distinct."""

    def check(raw: dict[str, Any], where: str) -> tuple[tuple[str, tuple[str, ...]] | None, list[str]]:
        ids = [raw["answer"], *raw["multiple_choices"]]
        fields = ["answer"] + [f"multiple_choices[{i}]" for i in range(len(ids) - 1)]
        problems = [f"{where}: '{f}' must be a box_id (an integer), got {v!r}" for f, v in zip(fields, ids, strict=True)
                    if not is_int(v)]  # fmt: skip
        if problems:
            return None, problems
        problems = [f"{where}: '{f}' is box_id {v}, which is not in 'boxes'" for f, v in zip(fields, ids, strict=True)
                    if v not in regions]  # fmt: skip
        if raw["answer"] in raw["multiple_choices"]:
            problems.append(f"{where}: the answer box_id {raw['answer']} is also among the distractors")
        dupes = sorted(v for v, n in Counter(raw["multiple_choices"]).items() if n > 1)
        if dupes:
            problems.append(f"{where}: duplicate distractor box_ids: {dupes}")
        if problems:
            return None, problems
        return (str(raw["answer"]), tuple(str(v) for v in raw["multiple_choices"])), []

    return check


def parse_pointing(data: Any, image_dir: str | Path) -> Visual7W:
    """Validate a parsed ``dataset_v7w_pointing.json``; raise DatasetError listing every bad record and box.

    The returned dataset's ``regions`` maps box_id -> Box. Whether a box lies inside its image needs the
    image's size: ``check_boxes_inside`` does that where the images are opened."""
    regions, problems = parse_boxes(data)
    dataset = parse_images(data, image_dir, box_candidates(regions), POINTING_TYPES, "Visual7W pointing file",
                           problems)  # fmt: skip
    dataset.boxes = regions
    return dataset


def load_pointing(annotations: str | Path, image_dir: str | Path) -> Visual7W:
    """Load and validate ``dataset_v7w_pointing.json``; filenames are resolved inside ``image_dir``."""
    return load_annotations(annotations, image_dir, parse_pointing, "Visual7W pointing file")


def candidate_boxes(dataset: Visual7W, qa: Any) -> list[Box]:
    """The QA's four candidate boxes, answer first (the file's order)."""
    return [dataset.boxes[int(c)] for c in qa.candidates]


def image_sizes(dataset: Visual7W, image_ids: Any = None) -> dict[int, tuple[int, int]]:
    """(width, height) of ``image_ids`` (default: every image that has a QA), from the file headers (no
    decoding); unreadable images are left out (the features stage reports them by name)."""
    sizes = {}
    for image_id in sorted(image_ids) if image_ids is not None else dataset.image_ids():
        try:
            sizes[image_id] = header_size(dataset.image_path(image_id))
        except (OSError, UnidentifiedImageError, ValueError):
            continue
    return sizes


def candidate_geometry(dataset: Visual7W, qas: Any) -> list[list[tuple[float, float, float, float]]]:
    """Per QA, its K candidate boxes as ``(x0, y0, x1, y1)`` in [0, 1] of the image (answer first): where they
    lie on the feature grid, whatever the image's size. Only geometry: names and ids stay behind."""
    sizes = image_sizes(dataset, {q.image_id for q in qas})
    missing = sorted({q.image_id for q in qas} - set(sizes))
    if missing:
        raise DatasetError(f"{len(missing)} image(s) cannot be read for their size, e.g. image_id {missing[0]}: "
                           f"{dataset.image_path(missing[0])}")  # fmt: skip
    return [[r.normalised(*sizes[q.image_id]) for r in candidate_boxes(dataset, q)] for q in qas]


def check_boxes_inside(dataset: Visual7W, sizes: dict[int, tuple[int, int]]) -> None:
    """Refuse candidate boxes that lie wholly outside their image (``sizes``: image_id -> (width, height)),
    naming the qa_id and box_id of each."""
    problems = []
    for qa in dataset.qa:
        if qa.image_id not in sizes:
            continue
        for region in candidate_boxes(dataset, qa):
            why = region.outside(*sizes[qa.image_id])
            if why:
                problems.append(f"image_id {qa.image_id} qa_id {qa.qa_id}: {why}")
    if problems:
        raise DatasetError(f"{len(problems)} candidate box(es) outside their image:", problems)


GEOMETRY_RULES = {f"{sign} {name}": (col, 1 if sign == "most" else -1)
                  for col, name in enumerate(("area", "x", "y")) for sign in ("most", "least")}  # fmt: skip


def geometry_prior_baseline(dataset: Visual7W, train: Any, test: Any) -> dict[str, Any]:
    """The blind prior of pointing: per question family (``families.question_family``), the geometry rule ("the
    largest box", "the leftmost", ...) that scores best on ``train``, scored on ``test`` (ties wrong). What a model
    that reads the question and the boxes, but not the image, can get for free; the synthetic world keeps it low."""
    def features(q: Any) -> list[tuple[float, float, float]]:
        return [(r.width * r.height, r.x + r.width / 2, r.y + r.height / 2) for r in candidate_boxes(dataset, q)]

    def right(q: Any, rule: tuple[int, int]) -> bool:
        col, sign = rule
        values = [sign * f[col] for f in features(q)]
        return values[0] > max(values[1:])  # the answer is candidates[0]; a tie is wrong

    by_family: dict[str, dict[str, list[Any]]] = {}
    for split, qs in (("train", train), ("test", test)):
        for q in qs:
            by_family.setdefault(question_family(q.question), {"train": [], "test": []})[split].append(q)
    hits, chosen = 0, {}
    for family, qs in by_family.items():
        name = max(GEOMETRY_RULES, key=lambda r: sum(right(q, GEOMETRY_RULES[r]) for q in qs["train"]))
        chosen[family] = name
        hits += sum(right(q, GEOMETRY_RULES[name]) for q in qs["test"])
    return {"accuracy": hits / max(1, len(test)), "n": len(test), "rules": chosen}


class Pointing(Task):
    name = "pointing"
    types = POINTING_TYPES
    reads_candidates = False  # box ids and names never reach the model: it sees the image and the geometry
    baseline_label = "blind box-geometry baseline (best rule per question family)"
    parts = BOXES
    auto_attention = "additive"  # each cell's offset from the box joins inside the tanh: only the additive form has one
    answers_open = False
    choice_words = "boxes (drag them on the image)"
    example_choices = ("0,0,8,8", "8,8,8,8")

    def load(self, annotations: str | Path, images: str | Path) -> Visual7W:
        return load_pointing(annotations, images)

    def grounding(self, path: str | Path | None, dataset: Visual7W) -> dict[int, list[Box]]:
        """Each QA's answer box: the object the question is about (``data.grounding`` is telling's file)."""
        return {q.qa_id: [dataset.boxes[int(q.answer)]] for q in dataset.qa}

    def check_images(self, dataset: Visual7W) -> None:
        check_boxes_inside(dataset, image_sizes(dataset))

    def candidate_tokens(self, tokenizer: Any, qas: Sequence[QA], max_len: int) -> list[list[int]]:
        """A single [UNK] per candidate: the batch layout of telling, and nothing of the box's id or name."""
        return [[tokenizer.unk_token_id]] * (len(qas) * len(qas[0].candidates) if qas else 0)

    def candidate_columns(self, dataset: Visual7W, qas: Sequence[QA]) -> dict[str, list[Any]]:
        return {"boxes": [[list(b) for b in row] for row in candidate_geometry(dataset, qas)]}

    def encode_choices(self, tokenizer: Any, images: Sequence[Any], choices: Sequence[Sequence[Any]], max_len: int,
                       ) -> tuple[list[list[int]], dict[str, torch.Tensor]]:  # fmt: skip
        boxes = torch.tensor([box_choices(cs, image_dimensions(im)) for im, cs in zip(images, choices, strict=True)])
        return [[tokenizer.unk_token_id]] * sum(len(cs) for cs in choices), {"boxes": boxes}  # [B, K, 4]

    def parse_choice(self, text: str) -> tuple[float, ...]:
        """'10,20,50,40' -> (10, 20, 50, 40): a box x, y, width, height in the image's pixels."""
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != 4:
            raise VQAError(f"a pointing run's choices are boxes 'x,y,width,height' in pixels, got {text!r}")
        return values

    def choice_boxes(self, dataset: Visual7W, qa: QA) -> list[Box]:
        return candidate_boxes(dataset, qa)

    def drawn_boxes(self, choices: Sequence[Any]) -> list[Box]:
        return [Box(i, "", *(float(v) for v in c)) for i, c in enumerate(choices)]

    def result_answer(self, candidate: str) -> int:
        return int(candidate)  # the toolkit's pointing results list box ids

    def prior_baseline(self, dataset: Visual7W, train: Sequence[QA], test: Sequence[QA]) -> dict[str, Any]:
        return geometry_prior_baseline(dataset, train, test)

    def question_glimpses(self, model: Any) -> int:
        return 0  # the candidates' own relations read where the question's object lies (``RelationsAndPlace``)

    def check_model(self, model: Any) -> str | None:
        if model.head == "decoder":
            return ("model.head=decoder generates answer words, and pointing's answers are boxes: use "
                    "model.head=score for pointing")
        if model.attention == "bilinear":
            return ("model.attention=bilinear is for telling; pointing needs additive (its attention adds each "
                    "cell's offset from the candidate box inside the tanh)")
        return None


def image_dimensions(image: Any) -> tuple[int, int]:
    """(width, height) of a path (from the file header), PIL image or array."""
    if isinstance(image, (str, Path)):
        try:
            return header_size(image)
        except (OSError, ValueError) as e:
            raise VQAError(f"{image}: cannot read the image ({e})") from None
    if isinstance(image, Image.Image):
        return image.size
    if hasattr(image, "shape"):
        return int(image.shape[1]), int(image.shape[0])
    raise VQAError(f"image must be a path, a PIL image or a uint8 array, not {type(image).__name__}")


def box_choices(choices: Sequence[Any], size: tuple[int, int]) -> list[tuple[float, float, float, float]]:
    """Pointing choices ``(x, y, width, height)`` in pixels -> ``(x0, y0, x1, y1)`` in [0, 1], clipped to the
    image like the official boxes; a choice that is not 4 numbers, or has nothing inside the image, is refused."""
    width, height = size
    out = []
    for i, c in enumerate(choices):
        if isinstance(c, str) or len(c) != 4 or not all(isinstance(v, (int, float)) for v in c):
            raise VQAError(f"choice {i}: a pointing run's choices are boxes (x, y, width, height), got {c!r}")
        x, w = clip(float(c[0]), float(c[2]))
        y, h = clip(float(c[1]), float(c[3]))
        box = Box(i, "", x, y, w, h)
        if w <= 0 or h <= 0 or box.outside(width, height):
            raise VQAError(f"choice {i}: the box {tuple(c)} has nothing inside the {width}x{height} image")
        out.append(box.normalised(width, height))
    return out
