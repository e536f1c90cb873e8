"""What the synthetic world's two scene kinds share: the scene record, the 3x3 layout, counts, and the rules that
turn a scene's objects into telling questions that only the image *and* the question answer together.

A question *kind* (``Kind``) says how an object's answer reads (``value``), which attribute sets may name the object
("the striped circle", "the 7"), and how those attributes are said. ``object_question`` then draws the answer
value uniformly among the values the image shows (not the object: a value three objects share would otherwise be
the answer three times as often, and "the candidate most common in the image" would beat chance without the
question), an object holding it that some description names alone, and three distractors among the other values
shown. ``count_question`` asks "how many" with the counted number uniform in 0..4.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

REGIONS = (  # row-major 3x3 layout
    "In the top left corner.", "At the top.", "In the top right corner.",
    "On the left.", "In the middle.", "On the right.",
    "In the bottom left corner.", "At the bottom.", "In the bottom right corner.",
)  # fmt: skip
COUNTS = ("None.", "One.", "Two.", "Three.", "Four.")
MAX_COUNT = len(COUNTS) - 1


def place(region: int) -> str:
    """A layout cell as a phrase inside a sentence: 0 -> 'in the top left corner'."""
    return REGIONS[region][0].lower() + REGIONS[region][1:-1]


@dataclass
class Scene:
    width: int
    height: int
    objects: list[dict[str, Any]]  # each with a region (3x3 layout cell), a box (x, y, w, h) and a name
    count: dict[str, Any]  # what the count question asks: {"attr", "value", "n"}
    kind: str = "shapes"  # shapes (coloured shapes and a window) | page (glyphs on paper)
    extra: dict[str, Any] = field(default_factory=dict)  # what the renderer needs beyond the objects (the paper)


@dataclass(frozen=True)
class Kind:
    """One object-question family: "What color is the {desc}?" -> "Red."."""

    type: str  # the Visual7W W it is filed under
    templates: tuple[str, ...]  # with {desc}
    answers: tuple[str, ...]  # every answer of the family (distractors come from here when the image has too few)
    value: Callable[[dict[str, Any]], str]  # the answer about an object
    descriptions: tuple[tuple[str, ...], ...]  # attribute sets that may name the object, tried in random order
    say: Callable[[dict[str, Any], tuple[str, ...]], str]  # the words of a description


def distractors(rng: random.Random, answer: str, in_image: Sequence[str], family: Sequence[str]) -> list[str]:
    """3 wrong answers: values other objects of the image have first (so the image alone does not tell which
    candidate is 'present'), then the rest of the family."""
    near = sorted({v for v in in_image if v != answer})
    rng.shuffle(near)
    rest = [v for v in family if v != answer and v not in near]
    rng.shuffle(rest)
    return (near + rest)[:3]


def describe(rng: random.Random, kind: Kind, obj: dict[str, Any], others: Sequence[dict[str, Any]]) -> str | None:
    """A referring expression for ``obj`` that fits no other object ("striped circle"), or None."""
    options = list(kind.descriptions)
    rng.shuffle(options)
    for fields in options:
        if not any(all(o[f] == obj[f] for f in fields) for o in others):
            return kind.say(obj, fields)
    return None


def ask(rng: random.Random, kind: Kind, objs: Sequence[dict[str, Any]], asked: set, distinct: int) -> tuple | None:
    """(object, referring expression) for a ``kind`` question, or None when the image cannot carry one: fewer than
    ``distinct`` values shown (4: every candidate is something the image shows), or no object nameable alone."""
    by_value: dict[str, list[dict[str, Any]]] = {}
    for o in objs:
        by_value.setdefault(kind.value(o), []).append(o)
    if len(by_value) < distinct:
        return None
    for _ in range(8):  # rejection sampling: an object that cannot be named uniquely is drawn again
        obj = rng.choice(by_value[rng.choice(sorted(by_value))])
        desc = describe(rng, kind, obj, [o for o in objs if o is not obj])
        if desc is not None and (id(kind), id(obj)) not in asked:
            return obj, desc
    return None


def object_question(rng: random.Random, kinds: Sequence[Kind], objs: Sequence[dict[str, Any]],
                    asked: set) -> dict[str, Any] | None:  # fmt: skip
    """A question of a kind drawn uniformly among those the image can carry, about an object drawn by its value."""
    order = rng.sample(list(kinds), len(kinds))
    for distinct in (4, 1):  # 4 distinct values when the image has them; fewer only with synth.min_objects < 4
        for kind in order:
            picked = ask(rng, kind, objs, asked, distinct)
            if picked is None:
                continue
            obj, desc = picked
            asked.add((id(kind), id(obj)))
            answer = kind.value(obj)
            others = [kind.value(o) for o in objs if o is not obj]
            return {"type": kind.type, "question": rng.choice(kind.templates).format(desc=desc), "answer": answer,
                    "multiple_choices": distractors(rng, answer, others, kind.answers), "name": obj["name"],
                    "boxes": [obj["box"]]}  # fmt: skip
    return None


def count_question(rng: random.Random, scene: Scene, templates: Sequence[str], name: str) -> dict[str, Any]:
    """'How many circles are there?': the candidates are all counts but one, left out uniformly at random.

    The family has five answers and a question shows four, so the only freedom is which count is missing. Taking
    the counts of the image's other values first (as the other families do) would make "None." a distractor on
    almost every question and a blind model would learn to avoid it; a uniformly missing count leaves the
    candidates saying nothing about the answer (blind prior 1/4).
    """
    attr, value, n = scene.count["attr"], scene.count["value"], scene.count["n"]
    answer = COUNTS[n]
    wrong = [c for c in COUNTS if c != answer]
    wrong.remove(rng.choice(wrong))
    rng.shuffle(wrong)
    question = rng.choice(templates).format(value=value)
    return {"type": "how", "question": question, "answer": answer, "multiple_choices": wrong, "name": name,
            "boxes": [o["box"] for o in scene.objects if o.get(attr) == value]}  # fmt: skip


def place_boxes(rng: random.Random, width: int, height: int, regions: Sequence[int], size: Callable[[int], tuple],
                ) -> list[tuple[int, int, int, int]]:  # fmt: skip
    """One box per layout cell of ``regions``: ``size(i)`` gives object i's (w, h), placed at random in its cell."""
    cell_w, cell_h = width / 3, height / 3
    out = []
    for i, region in enumerate(regions):
        w, h = size(i)
        row, col = divmod(region, 3)
        x = int(col * cell_w + rng.uniform(0, max(0.0, cell_w - w)))
        y = int(row * cell_h + rng.uniform(0, max(0.0, cell_h - h)))
        out.append((x, y, w, h))
    return out
