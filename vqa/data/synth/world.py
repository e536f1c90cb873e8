"""The synthetic 7W world as files: every image's scene (shapes or a page), its telling and pointing questions,
the grounding boxes, written in the official Visual7W layout.

Images are written first (each atomically), the grounding file next, the annotations last: a crash leaves no
annotations file that points at missing images, and a rerun simply rebuilds. Every image is a pure function of
``(seed, image_id)`` and the ``synth.*`` settings, independent of generation order.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

from PIL import Image

from ...common.errors import VQAError
from ...common.files import atomic_write_bytes, atomic_write_json
from ...common.progress import track
from .draw_pages import render_page
from .draw_shapes import render
from .pages import make_page, page_questions
from .pointing import annotation_paths, pointing_file
from .questions import Scene
from .shapes import make_questions, make_scene

SYNTH_VERSION = 6  # bump when the rendering or the questions change, so stale datasets are regenerated


def image_rng(seed: int, image_id: int) -> random.Random:
    """Per-image RNG: the dataset is a pure function of (seed, image_id), independent of generation order."""
    return random.Random(f"synth7w-{seed}-{image_id}")


def is_page(index: int, share: float) -> bool:
    """Whether the ``index``-th image of a split is a page: exactly round(n * share) of any n first images are."""
    return int((index + 1) * share + 0.5) > int(index * share + 0.5)


def _scene_and_questions(cfg: Any, rng: random.Random, page: bool) -> tuple[Scene, list[dict[str, Any]]]:
    s = cfg.synth
    if page:
        scene = make_page(rng, s.min_objects, s.max_objects, s.min_side, s.max_side)
        return scene, page_questions(scene, rng, s.object_questions)
    scene = make_scene(rng, s.min_objects, s.max_objects, s.min_side, s.max_side)
    return scene, make_questions(scene, rng, s.object_questions)


def generate(cfg: Any) -> tuple[dict[str, Any], dict[str, Any], dict[int, Scene]]:
    """The telling JSON, the grounding JSON and the scene of every image (rendered later, one at a time)."""
    s = cfg.synth
    counts = {"train": s.train_images, "val": s.val_images, "test": s.test_images}
    images, boxes, scenes = [], [], {}
    image_id, qa_id = 1, 1
    for split, count in counts.items():
        for index in range(count):
            scene, questions = _scene_and_questions(cfg, image_rng(cfg.seed, image_id), is_page(index, s.page_share))
            qa_pairs = []
            for q in questions:
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


def draw(scene: Scene, seed: int) -> Image.Image:
    return render_page(scene, seed) if scene.kind == "page" else render(scene, seed)


def jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
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
    an identical one is already there."""
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
    for image_id, scene in track(scenes.items(), "render images", "img", total=len(scenes)):
        img = draw(scene, seed=cfg.seed * 1_000_003 + image_id)
        atomic_write_bytes(paths[image_id], jpeg_bytes(img, cfg.synth.jpeg_quality))
    if cfg.data.grounding:
        atomic_write_json(cfg.data.grounding, grounding, indent=None)
    atomic_write_json(files["pointing"], pointing, indent=None)
    atomic_write_json(files["telling"], telling, indent=None)
    return {"written": True, "images": len(scenes), "telling": telling}
