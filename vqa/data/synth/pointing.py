"""Pointing ("which") questions about the synthetic world's scenes, in the official pointing layout.

The same images as telling (one feature store serves both tasks). Each question names one object and its four
candidates are object boxes; the model must find the object in the image, the box geometry alone must not say
which box it is. Kinds on a shapes scene, drawn uniformly among those the scene can carry (pages have their own,
in ``pages.which_page``):
  color         "Which object is red?"                     the only red object
  shape         "Which object is a star?"                  the only star
  color_shape   "Which is the red star?"                   (colour, shape) pairs are unique in every scene
  size          "Which is the largest circle?"             among 2+ objects sharing a shape or colour, by 1.2x
  relative      "Which object is left of the red star?"    the object in the next layout cell that way
Distractors are other objects' boxes, the hard ones first (the reference object of a relative question, the
rest of the group of a size question), and background boxes only when the image has too few objects. So a
"blind" model that sees the question and the four boxes' geometry, not the image, stays near chance; ``size`` is
asked within a group because "the largest object" would be readable from the geometry alone.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from . import pages
from .questions import Scene
from .shapes import SIZE_RANGE

POINTING_TEMPLATES = {
    "color": ("Which object is {color}?", "Which shape is {color}?"),
    "shape": ("Which object is a {shape}?", "Which one is a {shape}?"),
    "color_shape": ("Which is the {color} {shape}?", "Which object is the {color} {shape}?"),
    "size": ("Which is the {most} {group}?", "Which {group} is the {most}?"),
    "relative": ("Which object is {rel} the {color} {shape}?", "Which shape is {rel} the {color} {shape}?"),
}
RELATIONS = {"left of": (0, -1), "right of": (0, 1), "above": (-1, 0), "below": (1, 0)}  # (d row, d col)
SIZE_MARGIN = 1.2  # the asked object is at least this much larger (smaller) than the rest of its group
KINDS = tuple(POINTING_TEMPLATES)


def _size(obj: dict[str, Any]) -> int:
    return obj["box"][2]


def _unique(objs: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    counts = Counter(o[field] for o in objs)
    return [o for o in objs if counts[o[field]] == 1]


def _size_question(rng: random.Random, objs: list[dict[str, Any]]) -> tuple | None:
    """'the largest circle' / 'the smallest red object': within a group of 2+ that share a value, by a margin."""
    options = []
    for field in ("shape", "color"):
        for value, n in Counter(o[field] for o in objs).items():
            group = sorted((o for o in objs if o[field] == value), key=_size)
            if n < 2:
                continue
            name = f"{value}" if field == "shape" else f"{value} object"
            if _size(group[-1]) >= SIZE_MARGIN * _size(group[-2]):
                options.append((group[-1], {"most": "largest", "group": name}, group[:-1]))
            if _size(group[1]) >= SIZE_MARGIN * _size(group[0]):
                options.append((group[0], {"most": "smallest", "group": name}, group[1:]))
    return rng.choice(options) if options else None


def _relative_question(rng: random.Random, objs: list[dict[str, Any]]) -> tuple | None:
    """'left of the red star': the object in the neighbouring layout cell (one object per cell, so unique)."""
    at = {o["region"]: o for o in objs}
    options = []
    for ref in objs:
        row, col = divmod(ref["region"], 3)
        for rel, (dr, dc) in RELATIONS.items():
            r, c = row + dr, col + dc
            if 0 <= r < 3 and 0 <= c < 3 and (r * 3 + c) in at:
                options.append((at[r * 3 + c], {"rel": rel, "color": ref["color"], "shape": ref["shape"]}, [ref]))
    return rng.choice(options) if options else None


def _pick(rng: random.Random, kind: str, objs: list[dict[str, Any]]) -> tuple | None:
    """(answer object, template fields, hard distractor objects) for ``kind``, or None if the scene has none."""
    if kind in ("color", "shape"):
        unique = _unique(objs, kind)
        if not unique:
            return None
        obj = rng.choice(unique)
        return obj, {kind: obj[kind]}, []
    if kind == "color_shape":
        obj = rng.choice(objs)
        return obj, {"color": obj["color"], "shape": obj["shape"]}, []
    return _size_question(rng, objs) if kind == "size" else _relative_question(rng, objs)


def _background_box(rng: random.Random, scene: Scene, taken: set[int]) -> tuple[int, int, int, int]:
    """A box of object size in an empty layout cell (for images with fewer than 4 objects)."""
    region = rng.choice([r for r in range(9) if r not in taken])
    taken.add(region)
    cell_w, cell_h = scene.width / 3, scene.height / 3
    size = int(min(cell_w, cell_h) * rng.uniform(*SIZE_RANGE))
    row, col = divmod(region, 3)
    return (int(col * cell_w + rng.uniform(0, cell_w - size)), int(row * cell_h + rng.uniform(0, cell_h - size)),
            size, size)  # fmt: skip


def which_questions(rng: random.Random, scene: Scene, n: int) -> list[dict[str, Any]]:
    """Up to ``n`` distinct pointing questions: {question, answer: object, distractors: [object | box tuple]}."""
    objs = [o for o in scene.objects if o.get("shape") != "window"]
    templates, pick = ((pages.POINTING_TEMPLATES, pages.which_page) if scene.kind == "page"
                       else (POINTING_TEMPLATES, _pick))  # fmt: skip
    out: list[dict[str, Any]] = []
    for _ in range(4 * n):
        if len(out) == n:
            break
        kind = rng.choice(tuple(templates))
        picked = pick(rng, kind, objs)
        if picked is None:
            continue
        obj, fields, hard = picked
        question = rng.choice(templates[kind]).format(**fields)
        if any(q["question"] == question for q in out):
            continue
        hard = [o for o in hard if o is not obj]
        rest = [o for o in objs if o is not obj and not any(o is h for h in hard)]
        rng.shuffle(hard)
        rng.shuffle(rest)
        if kind == "size":  # objects outside the group that are even larger (smaller) first: then the box sizes
            sign = 1 if fields["most"] == "largest" else -1  # alone do not say which box is the answer
            rest.sort(key=lambda o: sign * _size(o) <= sign * _size(obj))
        distractors: list[Any] = (hard + rest)[:3]
        taken = {o["region"] for o in scene.objects}
        while len(distractors) < 3:
            distractors.append(_background_box(rng, scene, taken))
        out.append({"kind": kind, "question": question, "answer": obj, "distractors": distractors})
    return out


def _image_qa(rng: random.Random, scene: Scene, image_id: int, questions: int, boxes: list[dict[str, Any]],
              qa_id: int) -> list[dict[str, Any]]:  # fmt: skip
    """One image's pointing QA; its boxes (one per object, shared by its questions, then any background boxes) are
    appended to ``boxes``."""
    ids: dict[int, int] = {}

    def box_id(item: Any) -> int:  # an object (dict) or a background box (tuple)
        if id(item) not in ids:
            x, y, w, h = item["box"] if isinstance(item, dict) else item
            name = item["name"] if isinstance(item, dict) else "background"
            boxes.append({"box_id": len(boxes) + 1, "image_id": image_id, "name": name,
                          "x": x, "y": y, "width": w, "height": h})  # fmt: skip
            ids[id(item)] = len(boxes)
        return ids[id(item)]

    for obj in scene.objects:  # ids in the scene's order, not the answer's: a box id never hints at the answer
        if obj.get("shape") != "window":
            box_id(obj)
    return [{"qa_id": qa_id + i, "image_id": image_id, "type": "which", "question": q["question"],
             "answer": box_id(q["answer"]), "multiple_choices": [box_id(d) for d in q["distractors"]]}
            for i, q in enumerate(which_questions(rng, scene, questions))]  # fmt: skip


def pointing_file(scenes: dict[int, Scene], splits: dict[int, str], seed: int, questions: int,
                  stamp: dict[str, Any], first_qa_id: int) -> dict[str, Any]:  # fmt: skip
    """``dataset_v7w_pointing.json`` for the world's images: a box per object, background boxes where needed,
    qa_ids after the telling ones (the two files never share one). Its own RNG per image: adding pointing left
    the telling file exactly as it was."""
    images, boxes = [], []
    qa_id = first_qa_id
    for image_id, scene in scenes.items():
        rng = random.Random(f"synth7w-pointing-{seed}-{image_id}")
        qa_pairs = _image_qa(rng, scene, image_id, questions, boxes, qa_id)
        qa_id += len(qa_pairs)
        images.append({"image_id": image_id, "filename": f"v7w_{image_id}.jpg", "split": splits[image_id],
                       "qa_pairs": qa_pairs})  # fmt: skip
    return {"images": images, "boxes": boxes, "synthetic": stamp}


def annotation_paths(cfg: Any) -> dict[str, Path]:
    """Both tasks' annotation files: ``data.annotations`` is the configured task's, the other task's file sits
    beside it under its official name (the world always writes both, for the same images)."""
    ann = Path(cfg.data.annotations)
    return {**{task: ann.parent / f"dataset_v7w_{task}.json" for task in ("telling", "pointing")}, cfg.data.task: ann}
