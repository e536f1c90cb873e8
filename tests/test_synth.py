"""The synthetic world: official layout, deterministic, grounded, and not solvable blind or without the question."""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, tiny_config
from PIL import Image

from vqa.common.errors import VQAError
from vqa.config import load_config
from vqa.data import synth
from vqa.data.families import question_family
from vqa.data.grounding import load_grounding
from vqa.data.synth import pages, shapes
from vqa.data.synth.draw_pages import INKS
from vqa.data.synth.questions import COUNTS
from vqa.data.tasks.telling import load_telling, parse_telling
from vqa.evaluation.scoring import answer_prior_baseline, rank_candidates, result_entry, score_results

# question family (``question_family``) -> (scene kind, the kind of object question, or None)
FAMILIES = {
    "what shape is": ("shapes", shapes.KINDS["shape"]), "what color is": ("shapes", shapes.KINDS["color"]),
    "where is": ("shapes", shapes.KINDS["where"]), "how is": ("shapes", shapes.KINDS["how"]),
    "how many": ("shapes", None), "when was": ("shapes", None),
    "what is written": ("page", pages.KINDS["read"]), "where on the page": ("page", pages.KINDS["where"]),
    "what color ink": ("page", pages.KINDS["ink"]), "how many digits": ("page", None),
    "how many letters": ("page", None),
}  # fmt: skip
COUNT_FAMILIES = ("how many", "how many digits", "how many letters")
ANSWERS = {
    **{f: set(k.answers) for f, (_, k) in FAMILIES.items() if k is not None},
    **{f: set(COUNTS) for f in COUNT_FAMILIES}, "when was": set(shapes.FAMILIES["when"]),
}


def family_of(q) -> str:
    return question_family(q.question)


@functools.lru_cache(maxsize=2)
def generated(*overrides: str) -> tuple:
    """``synth.generate`` of the whole world (configs/full.yaml: base.yaml's sizes; the demo's is smaller), with
    ``overrides``, once per module: pages draw their glyphs' masks to know their boxes, which takes seconds."""
    return synth.generate(load_config(REPO / "configs" / "full.yaml", list(overrides)))


def objects_of(scene) -> list:
    return [o for o in scene.objects if o.get("shape") != "window"]


def test_output_passes_the_loader(tiny_dataset) -> None:
    cfg = tiny_dataset
    ds = load_telling(cfg.data.annotations, cfg.data.images)
    assert {q.split for q in ds.qa} == {"train", "val", "test"}
    assert len(ds.images) == 24 + 6 + 8
    assert {q.type for q in ds.qa} == {"what", "where", "how", "when"}
    for q in ds.qa:
        for c in q.candidates:
            assert (c[0].isupper() or c[0].isdigit()) and c.endswith("."), c
    per_image = Counter(q.image_id for q in ds.qa)
    # shapes: 3 object questions + "how many" + "when"; pages: 3 about glyphs + "how many" (half of each split)
    assert Counter(per_image.values()) == {5: 12 + 3 + 4, 4: 12 + 3 + 4}
    for image in ds.images.values():
        with Image.open(image.path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert 224 <= img.width <= 288 and 224 <= img.height <= 288


def test_distractors_come_from_the_answer_family(tiny_dataset) -> None:
    ds = load_telling(tiny_dataset.data.annotations, tiny_dataset.data.images)
    seen = Counter()
    for q in ds.qa:
        fam = family_of(q)
        seen[fam] += 1
        assert set(q.candidates) <= ANSWERS[fam], (q.question, q.candidates)
    assert set(seen) == set(FAMILIES), seen


def test_every_family_renders_and_is_grounded(tiny_dataset) -> None:
    """Each question family has its boxes in the grounding file, inside the image; a count has one box per counted
    object; a glyph's box holds its ink (dark or coloured pixels on light paper)."""
    cfg = tiny_dataset
    ds = load_telling(cfg.data.annotations, cfg.data.images)
    boxes = load_grounding(cfg.data.grounding)
    grounded = Counter()
    for q in ds.qa:
        fam = family_of(q)
        if q.qa_id in boxes:
            grounded[fam] += 1
        elif fam in COUNT_FAMILIES:
            assert q.answer == "None.", "only a count of zero has no box"
        else:
            raise AssertionError(f"qa {q.qa_id} ({q.question}) has no grounding box")
        if fam in COUNT_FAMILIES:
            assert len(boxes.get(q.qa_id, [])) == COUNTS.index(q.answer), q.question
        with Image.open(ds.image_path(q.image_id)) as img:
            pixels = np.asarray(img.convert("RGB"), np.float32)
            for box in boxes.get(q.qa_id, []):
                assert box.x + box.width <= img.width and box.y + box.height <= img.height
                if FAMILIES[fam][0] == "page":
                    inside = pixels[int(box.y) : int(box.y + box.height), int(box.x) : int(box.x + box.width)]
                    assert inside.min(axis=2).min() < 150, f"no ink in the box of {q.question}"
    assert set(grounded) == set(FAMILIES)
@pytest.mark.slow
def test_counts_are_uniform_and_referring_expressions_unique() -> None:
    telling, _, scenes = generated()
    ds = parse_telling(telling, "/nonexistent")
    for kind in ("shapes", "page"):
        counts = Counter(q.answer for q in ds.qa
                         if family_of(q) in COUNT_FAMILIES and FAMILIES[family_of(q)][0] == kind)  # fmt: skip
        assert min(counts.values()) / max(counts.values()) > 0.7, (kind, counts)
    for scene in scenes.values():
        if scene.kind == "page":
            chars = [o["char"] for o in scene.objects]
            assert len(set(chars)) == len(chars), "'the 7' must name one glyph"
            assert len({o["ink"] for o in scene.objects}) >= min(4, len(chars))
        else:
            pairs = [(o["color"], o["shape"]) for o in objects_of(scene)]
            assert len(set(pairs)) == len(pairs), "'the red circle' must name one object"


@pytest.mark.parametrize("family", [f for f, (_, kind) in FAMILIES.items() if kind is not None])
def test_image_alone_does_not_tell_the_answer(family: str) -> None:
    """A model that sees the image and the candidates but not the question is at chance: every candidate is a value
    some object of the image has, and "pick the candidate most (or least) common among the objects" scores 1/4
    (ties broken at random, so the expected score is exact)."""
    telling, _, scenes = generated()
    qs = [q for q in parse_telling(telling, "/nonexistent").qa if family_of(q) == family]
    present = most = least = 0.0
    for q in qs:
        counts = Counter(FAMILIES[family][1].value(o) for o in objects_of(scenes[q.image_id]))
        present += all(counts[c] > 0 for c in q.candidates)
        for sign in (1, -1):
            score = [sign * counts[c] for c in q.candidates]
            top = [c for c, s in zip(q.candidates, score, strict=True) if s == max(score)]
            expected = (q.answer in top) / len(top)
            most, least = (most + expected, least) if sign == 1 else (most, least + expected)
    n = len(qs)
    assert n > 80 and present / n == 1.0
    assert 0.2 <= most / n <= 0.3 and 0.2 <= least / n <= 0.3, (most / n, least / n)


def test_every_question_is_grounded_on_its_object(tiny_dataset) -> None:
    cfg = tiny_dataset
    ds = load_telling(cfg.data.annotations, cfg.data.images)
    boxes = load_grounding(cfg.data.grounding)
    checked = 0
    for q in ds.qa:
        with Image.open(ds.image_path(q.image_id)) as img:
            for box in boxes.get(q.qa_id, []):
                assert box.x + box.width <= img.width and box.y + box.height <= img.height
            if q.type == "how" and q.answer == "Solid.":
                # the centre of the grounded object is inside its shape; solid ones show their colour there
                colour = shapes.COLORS[q.question.split()[3]]  # "How is the <colour> <shape> painted?"
                (box,) = boxes[q.qa_id]
                cx, cy = int(box.x + box.width / 2), int(box.y + box.height / 2)
                pixel = np.asarray(img)[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3).mean(0)
                if np.abs(pixel - colour).max() < 40:
                    checked += 1
    assert checked >= 2, "solid objects must show their colour at the centre of their grounding box"


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a, b, c = (tiny_config(tmp_path / n, "synth.train_images=4", "synth.val_images=1", "synth.test_images=1")
               for n in "abc")  # fmt: skip
    c.seed = 1
    for cfg in (a, b, c):
        synth.write_dataset(cfg)

    def files(cfg):
        root = Path(cfg.data.annotations).parent
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(a) == files(b)
    assert files(a)[Path("dataset_v7w_telling.json")] != files(c)[Path("dataset_v7w_telling.json")]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_blind_baselines_stay_near_chance(family: str) -> None:
    """At the default size, in every family, neither the answer prior nor a question-conditioned prior beats 0.35
    on test."""
    telling, _, _ = generated()  # JSON only: no rendering needed
    ds = parse_telling(telling, "/nonexistent")
    train = [q for q in ds.split("train") if family_of(q) == family]
    test = [q for q in ds.split("test") if family_of(q) == family]
    assert len(test) >= 80
    assert answer_prior_baseline(train, test)["accuracy"] <= 0.35
    joint = Counter((q.question.lower(), q.answer.lower()) for q in train)
    entries = [
        result_entry(q, rank_candidates(q.candidates, [joint[(q.question.lower(), c.lower())] for c in q.candidates],
                                        q.answer))
        for q in test
    ]  # fmt: skip
    assert score_results(entries, test)["accuracy"] <= 0.35


def test_count_candidates_do_not_give_the_answer_away() -> None:
    """Whichever count is a candidate, it is the answer about a quarter of the time ("None." included): a blind
    model cannot learn to avoid a count that is shown mostly as a distractor."""
    telling, _, _ = generated()
    ds = parse_telling(telling, "/nonexistent")
    shown, right = Counter(), Counter()
    for q in ds.qa:
        if family_of(q) in COUNT_FAMILIES:
            shown.update(q.candidates)
            right[q.answer] += 1
    assert set(shown) == set(COUNTS)
    for c in COUNTS:
        assert 0.2 <= right[c] / shown[c] <= 0.3, (c, right[c], shown[c])


def test_up_to_date_dataset_is_not_rewritten(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "synth.train_images=2", "synth.val_images=1", "synth.test_images=1")
    assert synth.write_dataset(cfg)["written"]
    assert not synth.write_dataset(cfg)["written"]
    assert synth.write_dataset(cfg, force=True)["written"]
    (Path(cfg.data.images) / "v7w_1.jpg").unlink()
    assert synth.write_dataset(cfg)["written"], "a missing image must trigger a rebuild"
    cfg.synth.jpeg_quality = 50
    assert synth.write_dataset(cfg)["written"], "a changed setting must trigger a rebuild"


def test_refuses_to_overwrite_a_real_dataset(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    Path(cfg.data.annotations).write_text(json.dumps({"images": []}))
    with pytest.raises(VQAError, match=r"refusing to overwrite .* not written by the synthetic generator"):
        synth.write_dataset(cfg)
    Path(cfg.data.annotations).unlink()
    Path(cfg.data.images).mkdir()
    (Path(cfg.data.images) / "v7w_1.jpg").write_bytes(b"real photo")
    with pytest.raises(VQAError, match="refusing to write synthetic images into"):
        synth.write_dataset(cfg)
    assert (Path(cfg.data.images) / "v7w_1.jpg").read_bytes() == b"real photo"


def test_page_glyphs_are_drawn_from_many_typefaces_and_strokes() -> None:
    """A glyph is not one template: across a split the same character comes in several typefaces, slants,
    rotations, stroke widths and inks, on every kind of paper, and is at most one layout cell large."""
    _, _, scenes = generated()
    page_scenes = [s for s in scenes.values() if s.kind == "page"]
    assert len(page_scenes) == (3200 + 400 + 800) // 2, "half of the world is pages"
    sevens = [g for s in page_scenes for g in s.objects if g["char"] == "7"]
    assert len({g["font"] for g in sevens}) >= 8 and len({g["ink"] for g in sevens}) == len(INKS)
    assert len({g["stroke"] for g in sevens}) >= 3 and np.std([g["rotation"] for g in sevens]) > 5
    assert {s.extra["paper"] for s in page_scenes} == set(pages.PAPERS)
    for s in page_scenes:
        for g in s.objects:
            _, _, w, h = g["box"]
            assert w <= s.width / 3 and h <= s.height / 3, "a glyph stays in its layout cell"
