"""What a run was trained on: a fingerprint of the data, kept with every checkpoint and checked before it is used.

A checkpoint's model spec and feature-store fingerprint say which network and which features it holds, not which
questions. Change the dataset under a run (a new world size, a re-split, an answer edited) and a resumed run would
go on training on another split, or evaluation would score a model whose training images are today's test images.
So the split assignment, the questions and answers of each split and the tokenizer are fingerprinted when training
starts (``meta["data"]``); resuming and evaluating compare them with today's and refuse, naming what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .common.errors import VQAError

SPLITS = ("train", "val", "test")
START_OVER = 'start over on today\'s data: make train ARGS="train.resume=never" (or give the run another run.dir)'


def _digest(items: Iterable[Any]) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(json.dumps(item, sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def data_fingerprint(dataset: Any, tokenizer_file: Path) -> dict[str, Any]:
    """Per split: how many questions and images, and digests of its qa_ids, its image ids and its QA text
    (question, answer, distractors, type); and a digest of the tokenizer file."""
    splits = {}
    for split in SPLITS:
        qas = sorted(dataset.split(split), key=lambda q: q.qa_id)
        images = sorted({q.image_id for q in qas})
        splits[split] = {
            "questions": len(qas), "images": len(images),
            "qa_ids": _digest(q.qa_id for q in qas), "image_ids": _digest(images),
            "text": _digest((q.qa_id, q.question, q.answer, list(q.distractors), q.type) for q in qas),
        }  # fmt: skip
    return {"splits": splits, "tokenizer": hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()[:16]}


def data_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's fingerprint and today's, one line per change (empty: the same data)."""
    out = []
    for split in SPLITS:
        a, b = saved.get("splits", {}).get(split, {}), now["splits"][split]
        if a.get("image_ids") != b["image_ids"]:
            out.append(f"the {split} split's images changed ({a.get('images')} -> {b['images']} images)")
        if a.get("qa_ids") != b["qa_ids"]:
            out.append(f"the {split} split's questions changed ({a.get('questions')} -> {b['questions']} questions)")
        elif a.get("text") != b["text"]:
            out.append(f"a question or answer of the {split} split was edited (the same {b['questions']} qa_ids)")
    if saved.get("tokenizer") != now["tokenizer"]:
        out.append("the tokenizer differs from the one the checkpoint was trained with")
    return out


def check_data(meta: dict[str, Any], now: dict[str, Any], what: str, warn: Any) -> None:
    """Refuse a checkpoint (``what``: its folder) trained on other data than today's; a checkpoint written before
    fingerprints were kept gets one warning line through ``warn``."""
    saved = meta.get("data")
    if saved is None:
        warn(f"warning: {what} predates data fingerprints: this code cannot check that it was trained on today's "
             "data (retrain to be sure)")  # fmt: skip
        return
    changes = data_changes(saved, now)
    if changes:  # one line: what changed, and how to start over
        raise VQAError(f"{what} was trained on other data than today's ({'; '.join(changes)}): {START_OVER}")


def shared_images(dataset: Any, split: str) -> list[int]:
    """Image ids of ``split`` whose picture (the image file) the train split also holds, sorted: a test or val
    score over them is a leak. Two records name one picture when their files resolve to the same path."""
    if split == "train":
        return []
    train = {dataset.image_path(i).resolve() for i in dataset.image_ids(["train"])}
    return [i for i in dataset.image_ids([split]) if dataset.image_path(i).resolve() in train]
