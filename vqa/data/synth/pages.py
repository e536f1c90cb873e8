"""The page scenes of the synthetic 7W world: 4-6 digits and letters written on paper, asked about by what they are.

Why: the shapes scenes are read from colour and outline, which an ImageNet grid hands a model almost linearly;
real Visual7W asks what a small region *holds* ("What is written on the sign?"). A page holds distinct glyphs
(digits 0-9 and ten capital letters that no digit resembles), one per cell of the 3x3 layout, each in its own
typeface, stroke and ink (``draw_pages``). Telling families:
  what is written    "What is written in the top left corner?"  -> "7."       (read a glyph found by place or ink)
  where on the page  "Where on the page is the 7?"              -> "At the top."  (find a glyph by what it is)
  what color ink     "What color ink is the 7 written in?"      -> "Blue."    (find it, then read its ink)
  how many           "How many digits are there?"               -> "Two."     (0-4, digits or letters)
and pointing ("Which box holds the 7?", "Which letter is written in red ink?", "Which character is left of the
7?"). As in the shapes scenes, the answer value is drawn uniformly among the values the page shows and the
distractors are other values it shows, so a model that sees the page but not the question stays at chance.
"""

from __future__ import annotations

import random
from typing import Any

from .draw_pages import INKS, PAPERS, glyph_mask, glyph_params
from .questions import COUNTS, MAX_COUNT, REGIONS, Kind, Scene, count_question, object_question, place, place_boxes

DIGITS = tuple("0123456789")
LETTERS = tuple("CEFHKMPRTX")  # no O, I, S, Z, B, G (0, 1, 5, 2, 8, 6) and no A (the article "a" once lowercased)
CLASSES = {"digit": DIGITS, "letter": LETTERS}
GLYPH_SIZE = (0.42, 0.8)  # glyph height as a share of its layout cell: the small end is about one 7x7 grid cell
INK_ANSWERS = tuple(f"{ink.capitalize()}." for ink in INKS)
COUNT_TEMPLATES = ("How many {value}s are there?", "How many {value}s are written on the page?")


def _say_read(obj: dict[str, Any], fields: tuple[str, ...]) -> str:
    return place(obj["region"]) if fields == ("region",) else f"in {obj['ink']} ink"


def _say_glyph(obj: dict[str, Any], fields: tuple[str, ...]) -> str:
    return obj["char"] if fields == ("char",) else f"character {place(obj['region'])}"


KINDS = {
    "read": Kind("what", ("What is written {desc}?", "What is written {desc} on this page?"),
                 tuple(f"{c}." for c in DIGITS + LETTERS), lambda o: f"{o['char']}.", (("region",), ("ink",)),
                 _say_read),
    "where": Kind("where", ("Where on the page is the {desc}?", "Where on the page is the {desc} written?"),
                  REGIONS, lambda o: REGIONS[o["region"]], (("char",),), _say_glyph),
    "ink": Kind("what", ("What color ink is the {desc} written in?", "What color ink is used for the {desc}?"),
                INK_ANSWERS, lambda o: f"{o['ink'].capitalize()}.", (("char",), ("region",)), _say_glyph),
}  # fmt: skip
FAMILIES = {**{f"page_{name}": list(kind.answers) for name, kind in KINDS.items()}, "page_count": list(COUNTS)}


def _fit(rng: random.Random, char: str, cell_w: float, cell_h: float) -> dict[str, Any]:
    """A glyph's drawing parameters, shrunk until its mask fits inside its layout cell; with its mask size."""
    height = int(min(cell_w, cell_h) * rng.uniform(*GLYPH_SIZE))
    params = glyph_params(rng, height)
    while True:
        w, h = glyph_mask(char, params["font"], params["size"], params["rotation"], params["shear"],
                          params["stroke"]).size  # fmt: skip
        if (w <= cell_w - 2 and h <= cell_h - 2) or params["size"] <= 12:
            return {**params, "wh": (w, h)}
        params["size"] = max(12, int(params["size"] * 0.85))


def make_page(rng: random.Random, min_objects: int, max_objects: int, min_side: int, max_side: int) -> Scene:
    """Sample a page: n distinct glyphs, one per 3x3 cell, exactly ``count`` of the counted class (uniform in 0..4,
    independent of n), inks so that at least four differ, and the paper."""
    width, height = rng.randint(min_side, max_side), rng.randint(min_side, max_side)
    n = rng.randint(min_objects, max_objects)
    counted = rng.choice(tuple(CLASSES))
    other = "letter" if counted == "digit" else "digit"
    count = rng.randint(0, min(MAX_COUNT, n))
    chars = [(c, counted) for c in rng.sample(CLASSES[counted], count)]
    chars += [(c, other) for c in rng.sample(CLASSES[other], n - count)]
    rng.shuffle(chars)
    inks = rng.sample(list(INKS), len(INKS))
    inks = [inks[i] if i < 4 else rng.choice(inks) for i in range(n)]  # four distinct inks, then any
    regions = rng.sample(range(9), n)
    glyphs = [_fit(rng, c, width / 3, height / 3) for c, _ in chars]
    boxes = place_boxes(rng, width, height, regions, lambda i: glyphs[i].pop("wh"))
    objects = [{"char": c, "class": cls, "ink": ink, "region": r, "box": box, "name": f"{ink} {c}", **g}
               for (c, cls), ink, r, box, g in zip(chars, inks, regions, boxes, glyphs, strict=True)]  # fmt: skip
    return Scene(width, height, objects, {"attr": "class", "value": counted, "n": count}, kind="page",
                 extra={"paper": rng.choice(PAPERS)})  # fmt: skip


def page_questions(scene: Scene, rng: random.Random, object_questions: int = 3) -> list[dict[str, Any]]:
    """Up to ``object_questions`` questions about the glyphs (read, where, ink) and the count question."""
    glyphs = scene.objects
    asked: set = set()
    out = [q for _ in range(min(object_questions, len(glyphs)))
           if (q := object_question(rng, list(KINDS.values()), glyphs, asked))]  # fmt: skip
    out.append(count_question(rng, scene, COUNT_TEMPLATES, f"{scene.count['value']}s"))
    rng.shuffle(out)
    return out


# ------------------------------------------------------------------------------------------------ pointing
POINTING_TEMPLATES = {
    "glyph": ("Which box holds the {char}?", "Which box shows the {char}?"),
    "ink": ("Which {cls} is written in {ink} ink?", "Which {cls} is {ink}?"),
    "relative": ("Which character is {rel} the {char}?", "Which character is written {rel} the {char}?"),
}
RELATIONS = {"left of": (0, -1), "right of": (0, 1), "above": (-1, 0), "below": (1, 0)}  # (d row, d col)


def which_page(rng: random.Random, kind: str, glyphs: list[dict[str, Any]]) -> tuple | None:
    """(answer glyph, template fields, hard distractor glyphs) for a pointing question ``kind``, or None."""
    if kind == "glyph":
        g = rng.choice(glyphs)
        return g, {"char": g["char"]}, []
    if kind == "ink":  # a glyph whose (class, ink) no other glyph shares; the same-class glyphs are the hard ones
        unique = [g for g in glyphs if sum(o["class"] == g["class"] and o["ink"] == g["ink"] for o in glyphs) == 1]
        if not unique:
            return None
        g = rng.choice(unique)
        hard = [o for o in glyphs if o["ink"] == g["ink"] or o["class"] == g["class"]]  # one of the two differs
        return g, {"cls": g["class"], "ink": g["ink"]}, hard
    at = {g["region"]: g for g in glyphs}
    options = []
    for ref in glyphs:
        row, col = divmod(ref["region"], 3)
        for rel, (dr, dc) in RELATIONS.items():
            r, c = row + dr, col + dc
            if 0 <= r < 3 and 0 <= c < 3 and (r * 3 + c) in at:
                options.append((at[r * 3 + c], {"rel": rel, "char": ref["char"]}, [ref]))
    return rng.choice(options) if options else None
