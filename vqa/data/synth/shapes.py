"""The shapes scenes of the synthetic 7W world: coloured shapes with fill patterns, and a window showing the time.

Each image holds 4-6 objects (shapes of several colours, fill patterns and sizes, small ones included) and a window
whose sky tells the time of day; each question refers to one object (or counts some of them). Answers are drawn
uniformly from their family, so a blind model (question + candidates, no image) stays near 25 %, and distractors
are taken from *other objects in the same image* first, so an image-only model (image + candidates, no question)
cannot pick "what is present".

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

import random
from typing import Any

from .questions import COUNTS, MAX_COUNT, REGIONS, Kind, Scene, count_question, distractors, object_question, place_boxes

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
TIMES = {"night": "At night.", "day": "During the day.", "sunset": "At sunset.", "dawn": "At dawn."}
SIZE_RANGE = (0.4, 0.85)  # object side as a share of its layout cell: the small end is under one 7x7 grid cell
WINDOW_SIZE = (0.62, 0.82)
FILL_WORDS = {"solid": "solid", "striped": "striped", "dotted": "dotted", "outlined": "outlined"}
COUNT_TEMPLATES = {
    "shape": ("How many {value}s are there?", "How many {value}s are in the picture?"),
    "color": ("How many {value} objects are there?", "How many {value} shapes are in the picture?"),
}
WHEN_TEMPLATES = ("When was this picture taken?", "When was this photo taken?")


def _say(obj: dict[str, Any], fields: tuple[str, ...]) -> str:
    return " ".join(FILL_WORDS[obj[f]] if f == "fill" else obj[f] for f in fields)


# per question kind: templates, and the attribute sets that may describe the object (tried in random order;
# one that names a single object of the image is used)
KINDS = {
    "shape": Kind("what", ("What shape is the {desc} object?", "What shape is the {desc} object in the picture?"),
                  tuple(f"A {s}." for s in SHAPES), lambda o: f"A {o['shape']}.",
                  (("color",), ("fill",), ("fill", "color")), _say),
    "color": Kind("what", ("What color is the {desc}?", "What color is the {desc} in the picture?"),
                  tuple(f"{c.capitalize()}." for c in COLORS), lambda o: f"{o['color'].capitalize()}.",
                  (("shape",), ("fill", "shape")), _say),
    "where": Kind("where", ("Where is the {desc}?", "Where is the {desc} located?"), REGIONS,
                  lambda o: REGIONS[o["region"]], (("color", "shape"), ("fill", "shape"), ("fill", "color", "shape")),
                  _say),
    "how": Kind("how", ("How is the {desc} painted?", "How is the {desc} filled?"), tuple(FILLS.values()),
                lambda o: FILLS[o["fill"]], (("color", "shape"),), _say),
}  # fmt: skip
FAMILIES = {
    **{name: list(kind.answers) for name, kind in KINDS.items()},
    "when": list(TIMES.values()),
    "count": list(COUNTS),
}


def _attributes(rng: random.Random, n: int, attr: str, value: str, count: int) -> list[dict[str, str]]:
    """n objects, exactly ``count`` of them with ``attr == value``; (colour, shape) pairs are all distinct, so
    "the red circle" always names one object. Values not used yet come first (fills cycle through all four), so
    most images show four distinct values of what they are asked about (see ``questions.ask``)."""
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
    cell = min(width, height) / 3

    def size(i: int) -> tuple[int, int]:
        side = int(cell * rng.uniform(*(SIZE_RANGE if i < n else WINDOW_SIZE)))
        return side, side

    objects = []
    for i, (region, box) in enumerate(zip(regions, place_boxes(rng, width, height, regions, size), strict=True)):
        obj = attrs[i] if i < n else {"shape": "window", "time": rng.choice(list(TIMES))}
        name = "window" if i == n else f"{obj['color']} {obj['shape']}"
        objects.append({**obj, "region": region, "box": box, "name": name})
    return Scene(width, height, objects, {"attr": attr, "value": value, "n": count})


def make_questions(scene: Scene, rng: random.Random, object_questions: int = 3) -> list[dict[str, Any]]:
    """Up to ``object_questions`` questions about the objects (see ``questions.object_question``), the count
    question and the 'when' question about the window."""
    shapes = [o for o in scene.objects if o["shape"] != "window"]
    window = next(o for o in scene.objects if o["shape"] == "window")
    asked: set = set()
    out = [q for _ in range(min(object_questions, len(shapes)))
           if (q := object_question(rng, list(KINDS.values()), shapes, asked))]  # fmt: skip
    attr, value = scene.count["attr"], scene.count["value"]
    out.append(count_question(rng, scene, COUNT_TEMPLATES[attr],
                              f"{value} {'objects' if attr == 'color' else 'shapes'}"))  # fmt: skip
    answer = TIMES[window["time"]]
    out.append({"type": "when", "question": rng.choice(WHEN_TEMPLATES), "answer": answer,
                "multiple_choices": distractors(rng, answer, [], FAMILIES["when"]), "name": "window",
                "boxes": [window["box"]]})  # fmt: skip
    rng.shuffle(out)
    return out
