"""Synthetic "7W world": an offline dataset in the exact Visual7W telling layout.

Why it exists: this project must run end to end without internet, and every stage must be tested on the official
file format. The world asks what real Visual7W asks, and is built so that *attention is needed*: each image holds
4-6 objects (shapes of several colours, fill patterns and sizes, small ones included) and a window showing the time
of day; each question refers to one object (or counts some of them). Answers are drawn uniformly from their family,
so a blind model (question + candidates, no image) stays near 25 %, and distractors are taken from *other objects in
the same image* first, so an image-only model (image + candidates, no question) cannot pick "what is present".

Question families (Visual7W-style answers: capitalised, trailing period, 3 distractors from the same family):
  what shape  "What shape is the striped object?"   -> "A circle."          (shape of a referred object)
  what color  "What color is the dotted star?"      -> "Yellow."            (colour, objects of every size)
  where       "Where is the red circle?"            -> "In the top left corner."  (3x3 layout: grid position)
  how (fill)  "How is the red circle painted?"      -> "With stripes."      (fill pattern)
  how many    "How many circles are there?"         -> "Two."               (0-4: counting, not locating)
  when        "When was this picture taken?"        -> "At sunset."         (the window's sky)
Every referring expression ("the red circle", "the striped object") names exactly one object of its image.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .errors import VQAError
from .io import atomic_write_bytes, atomic_write_json

COLORS = {
    "red": (215, 35, 35),
    "green": (30, 160, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 205, 20),
    "purple": (140, 50, 185),
    "orange": (250, 125, 15),
}
SHAPES = ("circle", "square", "triangle", "star")
FILLS = {"solid": "Solid.", "striped": "With stripes.", "dotted": "With dots.", "outlined": "Only its outline."}
REGIONS = (  # row-major 3x3 layout
    "In the top left corner.", "At the top.", "In the top right corner.",
    "On the left.", "In the middle.", "On the right.",
    "In the bottom left corner.", "At the bottom.", "In the bottom right corner.",
)  # fmt: skip
TIMES = {"night": "At night.", "day": "During the day.", "sunset": "At sunset.", "dawn": "At dawn."}
COUNTS = ("None.", "One.", "Two.", "Three.", "Four.")
MAX_COUNT = len(COUNTS) - 1
SIZE_RANGE = (0.4, 0.85)  # object side as a share of its layout cell: the small end is under one 7x7 grid cell
WINDOW_SIZE = (0.62, 0.82)

# per question kind: templates, and the attribute sets that may describe the object (tried in random order;
# one that names a single object of the image is used)
TEMPLATES = {
    "shape": ("What shape is the {desc} object?", "What shape is the {desc} object in the picture?"),
    "color": ("What color is the {desc}?", "What color is the {desc} in the picture?"),
    "where": ("Where is the {desc}?", "Where is the {desc} located?"),
    "how": ("How is the {desc} painted?", "How is the {desc} filled?"),
    "count_shape": ("How many {shape}s are there?", "How many {shape}s are in the picture?"),
    "count_color": ("How many {color} objects are there?", "How many {color} shapes are in the picture?"),
    "when": ("When was this picture taken?", "When was this photo taken?"),
}
DESCRIPTIONS = {
    "shape": (("color",), ("fill",), ("fill", "color")),
    "color": (("shape",), ("fill", "shape")),
    "where": (("color", "shape"), ("fill", "shape"), ("fill", "color", "shape")),
    "how": (("color", "shape"),),
}
OBJECT_KINDS = tuple(DESCRIPTIONS)
QTYPE = {"shape": "what", "color": "what", "where": "where", "how": "how", "count_shape": "how",
         "count_color": "how", "when": "when"}  # fmt: skip
FILL_WORDS = {"solid": "solid", "striped": "striped", "dotted": "dotted", "outlined": "outlined"}
SYNTH_VERSION = 5  # bump when the rendering or the questions change, so stale datasets are regenerated


def _value(kind: str, obj: dict[str, Any]) -> str:
    """The answer string of an object-question ``kind`` about ``obj``."""
    if kind == "shape":
        return f"A {obj['shape']}."
    if kind == "color":
        return f"{obj['color'].capitalize()}."
    if kind == "where":
        return REGIONS[obj["region"]]
    if kind == "how":
        return FILLS[obj["fill"]]
    return TIMES[obj["time"]]


FAMILIES = {
    "shape": [f"A {s}." for s in SHAPES],
    "color": [f"{c.capitalize()}." for c in COLORS],
    "where": list(REGIONS),
    "how": list(FILLS.values()),
    "when": list(TIMES.values()),
    "count": list(COUNTS),
}


def _distractors(rng: random.Random, answer: str, in_image: list[str], family: list[str]) -> list[str]:
    """3 wrong answers: values other objects of the image have first (so the image alone does not tell which
    candidate is 'present'), then the rest of the family."""
    near = sorted({v for v in in_image if v != answer})
    rng.shuffle(near)
    rest = [v for v in family if v != answer and v not in near]
    rng.shuffle(rest)
    return (near + rest)[:3]


@dataclass
class Scene:
    width: int
    height: int
    objects: list[dict[str, Any]]  # shape, color, fill, region, box (x, y, w, h); the window has time instead
    count: dict[str, Any]  # what the count question asks: {"attr": "shape" | "color", "value", "n"}


def _attributes(rng: random.Random, n: int, attr: str, value: str, count: int) -> list[dict[str, str]]:
    """n objects, exactly ``count`` of them with ``attr == value``; (colour, shape) pairs are all distinct, so
    "the red circle" always names one object. Values not used yet come first (fills cycle through all four), so
    most images show four distinct values of what they are asked about (see ``_ask``)."""
    pool = {"shape": list(SHAPES), "color": list(COLORS)}
    other = "color" if attr == "shape" else "shape"
    fills = rng.sample(list(FILLS), len(FILLS))
    objs: list[dict[str, str]] = []

    def fresh(values: list[str], field: str) -> str:  # a value no object has yet, when there is one
        return rng.choice([v for v in values if all(o[field] != v for o in objs)] or values)

    def free(own: str) -> list[str]:  # values of the other attribute not yet paired with ``own``
        return [v for v in pool[other] if not any(o[attr] == own and o[other] == v for o in objs)]

    for i in range(n):
        own = value if i < count else fresh([v for v in pool[attr] if v != value and free(v)], attr)
        objs.append({attr: own, other: fresh(free(own), other), "fill": fills[i % len(fills)]})
    rng.shuffle(objs)
    return objs


def make_scene(rng: random.Random, min_objects: int, max_objects: int, min_side: int, max_side: int) -> Scene:
    """Sample a layout: n objects and the window, one per 3x3 region, and what the count question counts.

    The count is drawn uniformly in 0..4 independently of n (when min_objects >= 4), so neither the number of
    objects nor the question gives it away.
    """
    width, height = rng.randint(min_side, max_side), rng.randint(min_side, max_side)
    n = rng.randint(min_objects, max_objects)
    attr = rng.choice(("shape", "color"))
    value = rng.choice(SHAPES if attr == "shape" else list(COLORS))
    count = rng.randint(0, min(MAX_COUNT, n))
    attrs = _attributes(rng, n, attr, value, count)
    regions = rng.sample(range(9), n + 1)
    cell_w, cell_h = width / 3, height / 3
    objects = []
    for i, region in enumerate(regions):
        size = int(min(cell_w, cell_h) * rng.uniform(*(SIZE_RANGE if i < n else WINDOW_SIZE)))
        row, col = divmod(region, 3)
        x = int(col * cell_w + rng.uniform(0, cell_w - size))
        y = int(row * cell_h + rng.uniform(0, cell_h - size))
        obj = attrs[i] if i < n else {"shape": "window", "time": rng.choice(list(TIMES))}
        objects.append({**obj, "region": region, "box": (x, y, size, size)})
    return Scene(width, height, objects, {"attr": attr, "value": value, "n": count})


def _describe(rng: random.Random, kind: str, obj: dict[str, Any], others: list[dict[str, Any]]) -> str | None:
    """A referring expression for ``obj`` that fits no other object ("striped circle"), or None."""
    options = list(DESCRIPTIONS[kind])
    rng.shuffle(options)
    for fields in options:
        if not any(all(o[f] == obj[f] for f in fields) for o in others):
            words = [FILL_WORDS[obj[f]] if f == "fill" else obj[f] for f in fields]
            return " ".join(words)
    return None


def _ask(rng: random.Random, kind: str, shapes: list[dict[str, Any]], asked: set, distinct: int) -> tuple | None:
    """(object, referring expression) for a ``kind`` question, or None when the image cannot carry one.

    Why the answer value is drawn first: drawing the *object* uniformly makes a value that three objects share
    the answer three times as often as a value only one has, and "pick the candidate most common in the image"
    then beats chance without reading the question. Drawing the value uniformly among the values present, and
    asking only when ``distinct`` (4: every candidate) values are present, leaves each candidate equally likely
    to be the answer for a model that sees the image and the candidates but not the question.
    """
    by_value: dict[str, list[dict[str, Any]]] = {}
    for o in shapes:
        by_value.setdefault(_value(kind, o), []).append(o)
    if len(by_value) < distinct:
        return None
    for _ in range(8):  # rejection sampling: an object that cannot be named uniquely is drawn again
        obj = rng.choice(by_value[rng.choice(sorted(by_value))])
        desc = _describe(rng, kind, obj, [o for o in shapes if o is not obj])
        if desc is not None and (kind, id(obj)) not in asked:
            return obj, desc
    return None


def _object_question(rng: random.Random, scene: Scene, asked: set) -> dict[str, Any] | None:
    """A question of a kind drawn uniformly among those the image can carry, about an object drawn by its value."""
    shapes = [o for o in scene.objects if o["shape"] != "window"]
    kinds = rng.sample(OBJECT_KINDS, len(OBJECT_KINDS))
    for distinct in (4, 1):  # 4 distinct values when the image has them; fewer only with synth.min_objects < 4
        for kind in kinds:
            picked = _ask(rng, kind, shapes, asked, distinct)
            if picked is None:
                continue
            obj, desc = picked
            asked.add((kind, id(obj)))
            answer = _value(kind, obj)
            others = [_value(kind, o) for o in shapes if o is not obj]
            return {"type": QTYPE[kind], "question": rng.choice(TEMPLATES[kind]).format(desc=desc),
                    "answer": answer, "multiple_choices": _distractors(rng, answer, others, FAMILIES[kind]),
                    "name": f"{obj['color']} {obj['shape']}", "boxes": [obj["box"]]}  # fmt: skip
    return None


def _count_question(rng: random.Random, scene: Scene) -> dict[str, Any]:
    """'How many circles are there?': the candidates are all counts but one, left out uniformly at random.

    The family has five answers and a question shows four, so the only freedom is which count is missing. Taking
    the counts of the image's other shapes first (as the other families do) would make "None." a distractor on
    almost every question and a blind model would learn to avoid it; a uniformly missing count leaves the
    candidates saying nothing about the answer (blind prior 1/4).
    """
    attr, value, n = scene.count["attr"], scene.count["value"], scene.count["n"]
    shapes = [o for o in scene.objects if o["shape"] != "window"]
    answer = COUNTS[n]
    wrong = [c for c in COUNTS if c != answer]
    wrong.remove(rng.choice(wrong))
    rng.shuffle(wrong)
    question = rng.choice(TEMPLATES[f"count_{attr}"]).format(**{attr: value})
    return {"type": "how", "question": question, "answer": answer, "multiple_choices": wrong,
            "name": f"{value} {'objects' if attr == 'color' else 'shapes'}",
            "boxes": [o["box"] for o in shapes if o[attr] == value]}  # fmt: skip


def make_questions(scene: Scene, rng: random.Random, object_questions: int = 3) -> list[dict[str, Any]]:
    """Up to ``object_questions`` questions about the objects (see ``_object_question``), the count question and
    the 'when' question about the window."""
    shapes = [o for o in scene.objects if o["shape"] != "window"]
    window = next(o for o in scene.objects if o["shape"] == "window")
    asked: set = set()
    out = [q for _ in range(min(object_questions, len(shapes))) if (q := _object_question(rng, scene, asked))]
    out.append(_count_question(rng, scene))
    answer = _value("when", window)
    out.append({"type": "when", "question": rng.choice(TEMPLATES["when"]), "answer": answer,
                "multiple_choices": _distractors(rng, answer, [], FAMILIES["when"]), "name": "window",
                "boxes": [window["box"]]})  # fmt: skip
    rng.shuffle(out)
    return out


def image_rng(seed: int, image_id: int) -> random.Random:
    """Per-image RNG: the dataset is a pure function of (seed, image_id), independent of generation order."""
    return random.Random(f"synth7w-{seed}-{image_id}")


def generate(cfg: Any) -> tuple[dict[str, Any], dict[str, Any], dict[int, Scene]]:
    """The telling JSON, the grounding JSON and the scene of every image (rendered later, one at a time)."""
    s = cfg.synth
    counts = {"train": s.train_images, "val": s.val_images, "test": s.test_images}
    images, boxes, scenes = [], [], {}
    image_id, qa_id = 1, 1
    for split, count in counts.items():
        for _ in range(count):
            rng = image_rng(cfg.seed, image_id)
            scene = make_scene(rng, s.min_objects, s.max_objects, s.min_side, s.max_side)
            qa_pairs = []
            for q in make_questions(scene, rng, s.object_questions):
                name = q.pop("name")
                for x, y, w, h in q.pop("boxes"):  # none for "How many ... ?" when the answer is "None."
                    boxes.append({"box_id": len(boxes) + 1, "qa_id": qa_id, "name": name,
                                  "x": x, "y": y, "width": w, "height": h})  # fmt: skip
                qa_pairs.append({"qa_id": qa_id, "image_id": image_id, **q})
                qa_id += 1
            images.append({"image_id": image_id, "filename": f"v7w_{image_id}.jpg", "split": split,
                           "qa_pairs": qa_pairs})  # fmt: skip
            scenes[image_id] = scene
            image_id += 1
    stamp = stamp_of(cfg)
    return {"images": images, "synthetic": stamp}, {"boxes": boxes, "synthetic": stamp}, scenes


def stamp_of(cfg: Any) -> dict[str, Any]:
    """What the dataset was generated from; stored as an extra top-level key (the loader ignores it)."""
    return {"generator": "vqa.synth", "version": SYNTH_VERSION, "seed": cfg.seed, **vars(cfg.synth)}


def _existing_stamp(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data.get("synthetic") if isinstance(data, dict) else None


def _check_safe_to_write(files: list[Path], image_dir: Path) -> None:
    """Never overwrite a real dataset: only files this generator wrote (stamped) may be replaced, and images go
    only into an empty folder or one that an earlier run of the generator filled (one of its files is there)."""
    for ann in files:
        if ann.exists() and _existing_stamp(ann) is None:
            raise VQAError(
                f"refusing to overwrite {ann}: it was not written by the synthetic generator "
                "(no 'synthetic' stamp). Point data.annotations/data.images at another folder."
            )
    if not any(ann.exists() for ann in files) and image_dir.is_dir() and any(image_dir.iterdir()):
        raise VQAError(
            f"refusing to write synthetic images into {image_dir}: the folder already holds files and "
            f"{files[0]} does not exist. Point data.images at an empty or new folder."
        )


def write_dataset(cfg: Any, force: bool = False) -> dict[str, Any]:
    """Write the synthetic dataset in the official layout (telling and pointing files, the same images); skip when
    an identical one is already there.

    Images are written first (each atomically), the grounding file next, the annotations last: a crash leaves no
    annotations file that points at missing images, and a rerun simply rebuilds.
    """
    from .synth_pointing import annotation_paths, pointing_file
    from .synth_render import jpeg_bytes, render

    files, image_dir = annotation_paths(cfg), Path(cfg.data.images)
    _check_safe_to_write(list(files.values()), image_dir)
    telling, grounding, scenes = generate(cfg)
    splits = {im["image_id"]: im["split"] for im in telling["images"]}
    last_qa = max((q["qa_id"] for im in telling["images"] for q in im["qa_pairs"]), default=0)
    pointing = pointing_file(scenes, splits, cfg.seed, cfg.synth.object_questions, telling["synthetic"], last_qa + 1)
    paths = {i: image_dir / f"v7w_{i}.jpg" for i in scenes}
    stamped = [*files.values(), *([Path(cfg.data.grounding)] if cfg.data.grounding else [])]
    up_to_date = all(_existing_stamp(f) == telling["synthetic"] for f in stamped)
    if up_to_date and not force and all(p.exists() for p in paths.values()):
        return {"written": False, "images": len(scenes), "telling": telling}
    image_dir.mkdir(parents=True, exist_ok=True)
    for image_id, scene in tqdm(scenes.items(), desc="render images", unit="img", mininterval=1.0):
        img = render(scene, seed=cfg.seed * 1_000_003 + image_id)
        atomic_write_bytes(paths[image_id], jpeg_bytes(img, cfg.synth.jpeg_quality))
    if cfg.data.grounding:
        atomic_write_json(cfg.data.grounding, grounding, indent=None)
    atomic_write_json(files["pointing"], pointing, indent=None)
    atomic_write_json(files["telling"], telling, indent=None)
    return {"written": True, "images": len(scenes), "telling": telling}
