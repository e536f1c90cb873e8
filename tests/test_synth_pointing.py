"""The synthetic world's pointing file: official layout, same images as telling, and not solvable blind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import REPO, tiny_config
from PIL import Image

from vqa.config import load_config
from vqa.data import synth
from vqa.data.families import question_family
from vqa.data.synth.draw_pages import INKS
from vqa.data.synth.pointing import annotation_paths, pointing_file
from vqa.data.synth.shapes import COLORS
from vqa.data.tasks.pointing import (
    candidate_boxes,
    check_boxes_inside,
    geometry_prior_baseline,
    load_pointing,
    parse_pointing,
)
from vqa.data.tasks.telling import load_telling


def test_written_next_to_telling_for_the_same_images(tiny_dataset) -> None:
    cfg = tiny_dataset
    paths = annotation_paths(cfg)
    telling = load_telling(paths["telling"], cfg.data.images)
    pointing = load_pointing(paths["pointing"], cfg.data.images)
    assert paths["pointing"].name == "dataset_v7w_pointing.json"
    assert set(pointing.images) == set(telling.images)
    assert {q.qa_id for q in pointing.qa}.isdisjoint(q.qa_id for q in telling.qa)
    sizes = {i: Image.open(im.path).size for i, im in pointing.images.items()}
    check_boxes_inside(pointing, sizes)
    assert {q.split for q in pointing.qa} == {"train", "val", "test"}
    assert all(q.type == "which" for q in pointing.qa)


def test_the_answer_box_holds_the_named_object(tiny_dataset) -> None:
    """The answer box shows the object the question names: "Which object is red?" points at red pixels. The
    colour of a box is the palette colour nearest to its saturated pixels (every fill pattern shows some)."""
    cfg = tiny_dataset
    ds = load_pointing(annotation_paths(cfg)["pointing"], cfg.data.images)
    palette = np.array(list(COLORS.values()), np.float32)
    checked = 0
    for q in ds.qa:
        words = q.question.rstrip("?").split()
        named = [w for w in words if w in COLORS]
        if not named or any(w in words for w in ("left", "right", "above", "below")):
            continue  # relative questions name the reference object's colour, not the answer's
        box = candidate_boxes(ds, q)[0]
        assert box.name.split()[0] == named[0], (q.question, box.name)
        with Image.open(ds.image_path(q.image_id)) as img:
            crop = np.asarray(img.convert("RGB").crop(tuple(int(v) for v in (box.x, box.y, box.x + box.width,
                                                                              box.y + box.height))), np.float32)
        pixels = crop.reshape(-1, 3)
        vivid = pixels[pixels.max(1) - pixels.min(1) > 80].mean(0)
        assert list(COLORS)[int(np.abs(palette - vivid).sum(1).argmin())] == named[0], q.question
        checked += 1
    assert checked >= 10


def test_a_pointing_config_writes_telling_beside_it(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, f"data.annotations={tmp_path}/dataset_v7w_pointing.json", "data.task=pointing",
                      "synth.train_images=3", "synth.val_images=1", "synth.test_images=1")  # fmt: skip
    synth.write_dataset(cfg)
    assert (tmp_path / "dataset_v7w_telling.json").is_file()
    assert load_pointing(cfg.data.annotations, cfg.data.images).boxes
    assert synth.write_dataset(cfg)["written"] is False  # both files up to date: nothing rewritten


def test_box_geometry_alone_stays_near_chance() -> None:
    """The best of six geometry rules (largest, smallest, leftmost, ... box), chosen per question family on train,
    scores <= 0.45 on test: a blind model sees the question and the boxes, and the world must not let that win."""
    cfg = load_config(REPO / "configs" / "full.yaml", ["synth.train_images=800", "synth.test_images=400"])
    telling, _, scenes = synth.generate(cfg)
    splits = {im["image_id"]: im["split"] for im in telling["images"]}
    ds = parse_pointing(pointing_file(scenes, splits, 0, 3, {}, 1), "/nonexistent")
    prior = geometry_prior_baseline(ds, ds.split("train"), ds.split("test"))
    assert prior["n"] > 1000 and prior["accuracy"] <= 0.45, prior


def test_pages_are_asked_in_pointing_and_their_answer_box_holds_the_glyph(tiny_dataset) -> None:
    """Pages get their own pointing kinds ("Which box holds the 7?", "Which digit is written in red ink?", "Which
    character is left of the 7?"); the answer box is the named glyph's, and an ink question's box shows that ink."""
    cfg = tiny_dataset
    ds = load_pointing(annotation_paths(cfg)["pointing"], cfg.data.images)
    families = {question_family(q.question) for q in ds.qa}
    assert "which box" in families and families & {"which digit", "which letter", "which character"}
    inks = np.array(list(INKS.values()), np.float32)
    checked = 0
    for q in ds.qa:
        words = q.question.rstrip("?").split()
        box = candidate_boxes(ds, q)[0]
        if words[:3] == ["Which", "box", "holds"]:
            assert box.name.split()[1] == words[-1], (q.question, box.name)  # "<ink> <char>"
        elif "ink" in words:
            named = words[words.index("ink") - 1]
            assert box.name.split()[0] == named, (q.question, box.name)
            with Image.open(ds.image_path(q.image_id)) as img:
                crop = np.asarray(img.convert("RGB").crop(tuple(int(v) for v in (box.x, box.y, box.x + box.width,
                                                                                  box.y + box.height))), np.float32)
            pixels = crop.reshape(-1, 3)
            ink = pixels[pixels.sum(1) < np.percentile(pixels.sum(1), 8)].mean(0)  # the darkest: the strokes
            assert list(INKS)[int(np.abs(inks - ink).sum(1).argmin())] == named, q.question
            checked += 1
    assert checked >= 1
