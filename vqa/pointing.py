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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import Visual7W, _clip, _is_int, parse_images, read_json
from .errors import DatasetError

POINTING_TYPES = ("which",)


@dataclass(frozen=True)
class Region:
    """A candidate box in absolute pixels, top-left origin, clipped at 0 (width and height shrink with it)."""

    box_id: int
    name: str  # what the box holds, for people only: the model never reads it
    x: float
    y: float
    width: float
    height: float

    def normalised(self, image_w: int, image_h: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in [0, 1] of the image: the features stage squash-resizes images, so these are also
        the box's place on the grid. The far edges are clipped to the image."""
        return (self.x / image_w, self.y / image_h, min(self.x + self.width, image_w) / image_w,
                min(self.y + self.height, image_h) / image_h)  # fmt: skip

    def outside(self, image_w: int, image_h: int) -> str | None:
        """Why this box cannot be a candidate on an image of this size (nothing of it inside), or None."""
        if self.x >= image_w or self.y >= image_h:
            return f"box_id {self.box_id} starts at ({self.x:g}, {self.y:g}), outside the {image_w}x{image_h} image"
        return None


def _check_box(raw: Any, index: int) -> tuple[Region | None, list[str]]:
    where = f"boxes[{index}]" + (f" (box_id {raw.get('box_id')})" if isinstance(raw, dict) else "")
    if not isinstance(raw, dict):
        return None, [f"{where}: a box must be an object, got {type(raw).__name__}"]
    missing = [k for k in ("box_id", "x", "y", "width", "height") if k not in raw]
    if missing:
        return None, [f"{where}: missing field '{k}'" for k in missing]
    if not _is_int(raw["box_id"]):
        return None, [f"{where}: 'box_id' must be an integer, got {raw['box_id']!r}"]
    nums = [raw[k] for k in ("x", "y", "width", "height")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e9 for v in nums):
        return None, [f"{where}: x, y, width, height must be finite numbers, got {nums}"]
    x, w = _clip(float(nums[0]), float(nums[2]))
    y, h = _clip(float(nums[1]), float(nums[3]))
    if w <= 0 or h <= 0:
        return None, [f"{where}: the box is empty once clipped to the image (x, y, width, height = {nums})"]
    name = raw.get("name", "")
    if not isinstance(name, str):
        return None, [f"{where}: 'name' must be a string, got {type(name).__name__}"]
    return Region(raw["box_id"], name, x, y, w, h), []


def parse_regions(data: Any) -> tuple[dict[int, Region], list[str]]:
    """The top-level ``boxes`` list by box_id, and every problem in it."""
    if not isinstance(data, dict) or not isinstance(data.get("boxes"), list):
        raise DatasetError("a pointing file must have a top-level 'boxes' list (box_id, name, x, y, width, height); "
                          "for a telling file set data.task=telling")
    regions: dict[int, Region] = {}
    problems: list[str] = []
    for i, raw in enumerate(data["boxes"]):
        region, found = _check_box(raw, i)
        problems += found
        if region is None:
            continue
        if region.box_id in regions:
            problems.append(f"boxes[{i}]: duplicate box_id {region.box_id}")
            continue
        regions[region.box_id] = region
    return regions, problems


def box_candidates(regions: dict[int, Region]) -> Any:
    """Pointing's candidate rule (see ``data._check_qa``): integer box ids that exist, all four distinct."""

    def check(raw: dict[str, Any], where: str) -> tuple[tuple[str, tuple[str, ...]] | None, list[str]]:
        ids = [raw["answer"], *raw["multiple_choices"]]
        fields = ["answer"] + [f"multiple_choices[{i}]" for i in range(len(ids) - 1)]
        problems = [f"{where}: '{f}' must be a box_id (an integer), got {v!r}" for f, v in zip(fields, ids, strict=True)
                    if not _is_int(v)]  # fmt: skip
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

    The returned dataset's ``regions`` maps box_id -> Region. Whether a box lies inside its image needs the
    image's size: ``check_regions_inside`` does that where the images are opened."""
    regions, problems = parse_regions(data)
    dataset = parse_images(data, image_dir, box_candidates(regions), POINTING_TYPES, "Visual7W pointing file",
                           problems)  # fmt: skip
    dataset.regions = regions
    return dataset


def load_pointing(annotations: str | Path, image_dir: str | Path) -> Visual7W:
    """Load and validate ``dataset_v7w_pointing.json``; filenames are resolved inside ``image_dir``."""
    data = read_json(annotations, "Visual7W pointing file")
    try:
        return parse_pointing(data, image_dir)
    except DatasetError as e:
        raise DatasetError(f"{annotations}: {e.headline}", e.problems) from None


def candidate_regions(dataset: Visual7W, qa: Any) -> list[Region]:
    """The QA's four candidate boxes, answer first (the file's order)."""
    return [dataset.regions[int(c)] for c in qa.candidates]


def image_sizes(dataset: Visual7W, image_ids: Any = None) -> dict[int, tuple[int, int]]:
    """(width, height) of ``image_ids`` (default: every image that has a QA), from the file headers (no
    decoding); unreadable images are left out (the features stage reports them by name)."""
    from PIL import Image, UnidentifiedImageError

    sizes = {}
    for image_id in sorted(image_ids) if image_ids is not None else dataset.image_ids():
        try:
            with Image.open(dataset.image_path(image_id)) as img:
                sizes[image_id] = img.size
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
    return [[r.normalised(*sizes[q.image_id]) for r in candidate_regions(dataset, q)] for q in qas]


def check_regions_inside(dataset: Visual7W, sizes: dict[int, tuple[int, int]]) -> None:
    """Refuse candidate boxes that lie wholly outside their image (``sizes``: image_id -> (width, height)),
    naming the qa_id and box_id of each."""
    problems = []
    for qa in dataset.qa:
        if qa.image_id not in sizes:
            continue
        for region in candidate_regions(dataset, qa):
            why = region.outside(*sizes[qa.image_id])
            if why:
                problems.append(f"image_id {qa.image_id} qa_id {qa.qa_id}: {why}")
    if problems:
        raise DatasetError(f"{len(problems)} candidate box(es) outside their image:", problems)


GEOMETRY_RULES = {f"{sign} {name}": (col, 1 if sign == "most" else -1)
                  for col, name in enumerate(("area", "x", "y")) for sign in ("most", "least")}  # fmt: skip


def geometry_prior_baseline(dataset: Visual7W, train: Any, test: Any) -> dict[str, Any]:
    """The blind prior of pointing: per question family (``scoring.question_family``), the geometry rule ("the
    largest box", "the leftmost", ...) that scores best on ``train``, scored on ``test`` (ties wrong). What a model
    that reads the question and the boxes, but not the image, can get for free; the synthetic world keeps it low."""
    from .scoring import question_family

    def features(q: Any) -> list[tuple[float, float, float]]:
        return [(r.width * r.height, r.x + r.width / 2, r.y + r.height / 2) for r in candidate_regions(dataset, q)]

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
