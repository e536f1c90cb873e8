"""Visual7W telling data layer: load, validate, and serve QA with their four candidates.

The official files are trusted by nobody here: every record is checked before any long work starts, and every
problem is reported with the ``image_id``/``qa_id`` it belongs to, so a user fixing a hand-edited or converted
dataset sees all of them at once instead of one traceback per run. Layout: the README's "Using the real
Visual7W data" (the official toolkit's files as they are).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .boxes import Box
from ..common.errors import DatasetError

QUESTION_TYPES = ("what", "where", "when", "who", "why", "how")  # telling
TYPE_INDEX = (*QUESTION_TYPES, "which")  # a QA table's "type" column: index into this (pointing is "which")
SPLITS = ("train", "val", "test")
N_DISTRACTORS = 3
N_CANDIDATES = N_DISTRACTORS + 1  # the answer and its distractors: every QA's candidate count
MAX_TEXT = 1000  # characters; the longest official question/answer is far shorter


@dataclass(frozen=True)
class QA:
    """One telling question; ``candidates`` is ``[answer] + distractors`` exactly as in the file."""

    qa_id: int
    image_id: int
    split: str
    type: str
    question: str
    answer: str
    distractors: tuple[str, ...]

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.answer, *self.distractors)


@dataclass(frozen=True)
class Image:
    image_id: int
    filename: str
    split: str
    path: Path  # resolved, guaranteed to lie inside the image folder


@dataclass
class Visual7W:
    images: dict[int, Image]
    qa: list[QA]
    image_dir: Path
    boxes: dict[int, Box] = field(default_factory=dict)  # pointing's candidate boxes by box_id (telling: none)

    def split(self, name: str) -> list[QA]:
        """The QA of one split, in file order."""
        if name not in SPLITS:
            raise DatasetError(f"unknown split '{name}'; expected one of {', '.join(SPLITS)}")
        return [q for q in self.qa if q.split == name]

    def qa_by_id(self) -> dict[int, QA]:
        return {q.qa_id: q for q in self.qa}

    def image_path(self, image_id: int) -> Path:
        return self.images[image_id].path

    def image_paths(self) -> dict[int, Path]:
        """{image id: file} of every image with a QA: what the features stage extracts (it needs nothing else)."""
        return {i: self.image_path(i) for i in self.image_ids()}

    def image_ids(self, splits: Iterable[str] = SPLITS) -> list[int]:
        """Ids of the images that have at least one QA in ``splits``, sorted (the order features are stored in)."""
        wanted = set(splits)
        return sorted({q.image_id for q in self.qa if q.split in wanted})


# ------------------------------------------------------------------------------------------------ validation
def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def text_problem(value: Any, field: str) -> str | None:
    if not isinstance(value, str):
        return f"'{field}' must be a string, got {type(value).__name__}"
    if not value.strip():
        return f"'{field}' is empty"
    if len(value) > MAX_TEXT:
        return f"'{field}' is {len(value)} characters long (limit {MAX_TEXT})"
    return None


def confine(image_dir: Path, filename: Any) -> tuple[Path | None, str | None]:
    """Resolve ``filename`` inside ``image_dir``; refuse absolute paths, '..' and symlinks that lead outside.

    Why: the filename comes from a downloaded JSON file, and the features stage opens whatever it names.
    """
    if not isinstance(filename, str) or not filename.strip():
        return None, f"'filename' must be a non-empty string, got {filename!r}"
    if "\x00" in filename:
        return None, "'filename' contains a NUL byte"
    rel = Path(filename)
    if rel.is_absolute() or filename.startswith(("/", "\\")) or (len(filename) > 1 and filename[1] == ":"):
        return None, f"filename '{filename}' is an absolute path; it must be relative to the image folder"
    if ".." in rel.parts or ".." in filename.replace("\\", "/").split("/"):
        return None, f"filename '{filename}' escapes the image folder ('..')"
    root = image_dir.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        return None, f"filename '{filename}' resolves to {path}, outside the image folder {root} (symlink?)"
    return path, None


CandidateRule = Callable[[dict[str, Any], str], tuple[tuple[Any, tuple[Any, ...]] | None, list[str]]]


def _check_qa(raw: Any, image: dict[str, Any], where: str, candidates: CandidateRule,
              types: tuple[str, ...]) -> tuple[QA | None, list[str]]:
    """One QA record: ids, type and question here; the answer and distractors by the task's ``candidates`` rule
    (telling: strings, pointing: box ids)."""
    if not isinstance(raw, dict):
        return None, [f"{where}: a QA record must be an object, got {type(raw).__name__}"]
    qa_id = raw.get("qa_id")
    where = f"{where} qa_id {qa_id}" if is_int(qa_id) else where
    problems = []
    for key in ("qa_id", "image_id", "type", "question", "answer", "multiple_choices"):
        if key not in raw:
            problems.append(f"{where}: missing field '{key}'")
    if problems:
        return None, problems
    if not is_int(qa_id):
        problems.append(f"{where}: 'qa_id' must be an integer, got {qa_id!r}")
    if not is_int(raw["image_id"]):
        problems.append(f"{where}: 'image_id' must be an integer, got {raw['image_id']!r}")
    elif raw["image_id"] != image.get("image_id"):
        problems.append(f"{where}: image_id {raw['image_id']} differs from its image's {image.get('image_id')}")
    if raw["type"] not in types:
        hint = " (a pointing question: set data.task=pointing)" if raw["type"] == "which" else ""
        problems.append(f"{where}: unknown type {raw['type']!r}; expected one of {', '.join(types)}{hint}")
    p = text_problem(raw["question"], "question")
    if p:
        problems.append(f"{where}: {p}")
    choices = raw["multiple_choices"]
    if not isinstance(choices, list):
        problems.append(f"{where}: 'multiple_choices' must be a list, got {type(choices).__name__}")
    elif len(choices) != N_DISTRACTORS:
        problems.append(
            f"{where}: 'multiple_choices' must hold exactly {N_DISTRACTORS} distractors, got {len(choices)}"
        )
    if problems:
        return None, problems
    picked, problems = candidates(raw, where)
    if picked is None:
        return None, problems
    answer, distractors = picked
    return QA(qa_id, raw["image_id"], image["split"], raw["type"], raw["question"], answer, distractors), []


def _check_image(raw: Any, index: int, image_dir: Path) -> tuple[Image | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f"images[{index}]: an image record must be an object, got {type(raw).__name__}"]
    image_id = raw.get("image_id")
    where = f"image_id {image_id}" if is_int(image_id) else f"images[{index}]"
    missing = [k for k in ("image_id", "filename", "split", "qa_pairs") if k not in raw]
    if missing:
        return None, [f"{where}: missing field '{k}'" for k in missing]
    problems = []
    if not is_int(image_id):
        problems.append(f"{where}: 'image_id' must be an integer, got {image_id!r}")
    if raw["split"] not in SPLITS:
        problems.append(f"{where}: unknown split {raw['split']!r}; expected one of {', '.join(SPLITS)}")
    if not isinstance(raw["qa_pairs"], list):
        problems.append(f"{where}: 'qa_pairs' must be a list, got {type(raw['qa_pairs']).__name__}")
    path, problem = confine(image_dir, raw["filename"])
    if problem:
        problems.append(f"{where}: {problem}")
    if problems:
        return None, problems
    return Image(image_id, raw["filename"], raw["split"], path), []


def parse_images(data: Any, image_dir: str | Path, candidates: CandidateRule, types: tuple[str, ...],
                 what: str, problems: list[str] | None = None) -> Visual7W:  # fmt: skip
    """The ``images`` list of either task: records, unique ids, confined filenames, each QA by ``candidates``.

    ``problems`` already found (pointing's box list) are reported together with these."""
    image_dir = Path(image_dir)
    if not isinstance(data, dict):
        raise DatasetError(f"the top level must be an object with an 'images' list, got {type(data).__name__}")
    if not isinstance(data.get("images"), list):
        raise DatasetError("the top level has no 'images' list")
    problems = list(problems or [])
    images: dict[int, Image] = {}
    qas: list[QA] = []
    seen_qa: dict[int, int] = {}
    for index, raw in enumerate(data["images"]):
        image, image_problems = _check_image(raw, index, image_dir)
        problems += image_problems
        if image is None:
            continue
        if image.image_id in images:
            problems.append(f"image_id {image.image_id}: duplicate image_id (also images[{index}])")
            continue
        images[image.image_id] = image
        for j, raw_qa in enumerate(raw["qa_pairs"]):
            qa, qa_problems = _check_qa(raw_qa, raw, f"image_id {image.image_id} qa_pairs[{j}]", candidates, types)
            problems += qa_problems
            if qa is None:
                continue
            if qa.qa_id in seen_qa:
                problems.append(
                    f"image_id {image.image_id} qa_id {qa.qa_id}: duplicate qa_id (also in image_id "
                    f"{seen_qa[qa.qa_id]})"
                )
                continue
            seen_qa[qa.qa_id] = image.image_id
            qas.append(qa)
    if problems:
        raise DatasetError(f"{len(problems)} problem(s) in the {what}:", problems)
    if not qas:
        raise DatasetError("the annotations hold no QA pairs")
    return Visual7W(images=images, qa=qas, image_dir=image_dir)


def read_json(path: str | Path, what: str) -> Any:
    """Read a JSON file, turning 'missing' and 'not JSON' into one clear line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_annotations(annotations: str | Path, image_dir: str | Path, parse: Callable[[Any, Path], Visual7W],
                     what: str) -> Visual7W:  # fmt: skip
    """Read a task's annotation file and ``parse`` it (``what`` names the file in errors); every problem is
    reported with the file's path."""
    data = read_json(annotations, what)
    try:
        return parse(data, Path(image_dir))
    except DatasetError as e:
        raise DatasetError(f"{annotations}: {e.headline}", e.problems) from None
