"""Grounding boxes: the file that gives them, and their place on the feature grid.

The features stage squash-resizes every image to S x S, so grid cell (i, j) of an H x W grid covers
``x in [j*W_img/W, (j+1)*W_img/W)``, ``y in [i*H_img/H, (i+1)*H_img/H)`` of the original image. This module maps
grounding boxes (absolute pixels) onto those cells: the optional training targets of the attention and of the
counting gates (``train.attention_supervision``), and the grounding metrics of evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .boxes import Box, clip
from .visual7w import is_int, read_json
from ..common.errors import DatasetError
from ..features.images import header_size


def parse_grounding(data: Any) -> dict[int, list[Box]]:
    """Boxes by qa_id from a parsed ``v7w_telling_answers.json``; negatives clipped, empty boxes dropped."""
    if not isinstance(data, dict) or not isinstance(data.get("boxes"), list):
        raise DatasetError("the grounding file must be an object with a 'boxes' list")
    problems = []
    boxes: dict[int, list[Box]] = {}
    for i, raw in enumerate(data["boxes"]):
        where = f"boxes[{i}]" + (f" (box_id {raw.get('box_id')})" if isinstance(raw, dict) else "")
        if not isinstance(raw, dict):
            problems.append(f"{where}: a box must be an object, got {type(raw).__name__}")
            continue
        missing = [k for k in ("qa_id", "x", "y", "width", "height") if k not in raw]
        if missing:
            problems += [f"{where}: missing field '{k}'" for k in missing]
            continue
        if not is_int(raw["qa_id"]):
            problems.append(f"{where}: 'qa_id' must be an integer, got {raw['qa_id']!r}")
            continue
        nums = [raw[k] for k in ("x", "y", "width", "height")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in nums):
            problems.append(f"{where}: x, y, width, height must be numbers, got {nums}")
            continue
        x, w = clip(float(nums[0]), float(nums[2]))
        y, h = clip(float(nums[1]), float(nums[3]))
        if w <= 0 or h <= 0:
            continue  # nothing of the box is inside the image
        boxes.setdefault(raw["qa_id"], []).append(Box(raw["qa_id"], str(raw.get("name", "")), x, y, w, h))
    if problems:
        raise DatasetError(f"{len(problems)} problem(s) in the grounding boxes:", problems)
    return boxes


def load_grounding(path: str | Path) -> dict[int, list[Box]]:
    data = read_json(path, "grounding file")
    try:
        return parse_grounding(data)
    except DatasetError as e:
        raise DatasetError(f"{path}: {e.headline}", e.problems) from None


def box_coverage(boxes: Sequence[Box], image_w: int, image_h: int, grid_h: int, grid_w: int) -> np.ndarray:
    """[grid_h, grid_w]: the share of each cell covered by the union of ``boxes`` (0..1)."""
    mask = np.zeros((image_h, image_w), dtype=bool)
    for b in boxes:
        x0, y0 = int(np.floor(b.x)), int(np.floor(b.y))
        x1, y1 = int(np.ceil(b.x + b.width)), int(np.ceil(b.y + b.height))
        mask[max(0, y0) : min(image_h, y1), max(0, x0) : min(image_w, x1)] = True
    ys = np.linspace(0, image_h, grid_h + 1).round().astype(int)
    xs = np.linspace(0, image_w, grid_w + 1).round().astype(int)
    cover = np.zeros((grid_h, grid_w), dtype=np.float32)
    for i in range(grid_h):
        for j in range(grid_w):
            cell = mask[ys[i] : ys[i + 1], xs[j] : xs[j + 1]]
            cover[i, j] = cell.mean() if cell.size else 0.0
    return cover


def grounding_targets(boxes: dict[int, list[Box]] | None, dataset: Any,
                      grid: tuple[int, int, int]) -> list[list[float]] | None:
    """Per QA, a density of its grounding boxes on the feature grid: each box's coverage normalised to sum 1, then
    summed, so the row sums to the number of boxes ([] without a box). The attention loss normalises it; the
    counting gates learn it as is (their mass is then the number of objects the question is about)."""
    if boxes is None:
        return None
    sizes: dict[int, tuple[int, int]] = {}
    out = []
    for q in dataset.qa:
        if q.qa_id not in boxes:
            out.append([])
            continue
        if q.image_id not in sizes:
            sizes[q.image_id] = header_size(dataset.image_path(q.image_id))
        covers = [box_coverage([b], *sizes[q.image_id], grid[1], grid[2]).ravel() for b in boxes[q.qa_id]]
        density = sum((c / c.sum() for c in covers if c.sum() > 0), np.zeros(grid[1] * grid[2], np.float32))
        out.append(density.tolist() if density.sum() > 0 else [])
    return out


def attention_loss(attention: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy between the grounding target and the true candidate's attention (glimpses averaged).

    Optional weak supervision (``train.attention_supervision``): the grounding boxes say where the answer is;
    pulling the true candidate's attention there gets attention out of its slow start on small data.
    """
    b = attention.shape[0]
    true = attention[torch.arange(b), batch["label"]].mean(1).flatten(1)  # [b, H*W]
    density = batch["target"]  # [b, H*W], zero rows where a QA has no box
    has = density.sum(1) > 0
    if not has.any():
        return attention.sum() * 0.0
    target = density[has] / density[has].sum(1, keepdim=True)  # [n, H*W], sums to 1
    # per example of the batch (no box: 0), not per boxed example: a mean over each process's own boxed rows
    # would weigh examples differently on 1 and N processes
    return -(target * torch.log(true[has] + 1e-8)).sum() / b


def gate_loss(gates: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Binary cross-entropy between every candidate's counting gates and the grounding boxes' density.

    The gates should light the cells of the objects the question is about, whatever the candidate, so that their
    mass counts them: on a "how many" question, one box per counted object gives a density that sums to the count.
    Summed over the cells (a mean over 49 mostly empty cells would barely move them), plus the squared error of the
    gates' mass against the number of boxes, averaged over candidates and glimpses, and, like ``attention_loss``,
    divided by the whole batch.
    """
    b = gates.shape[0]  # gates: logits [b, K, H*W, G]
    density = batch["target"]  # [b, H*W], zero rows where a QA has no box
    has = density.sum(1) > 0
    if not has.any():
        return gates.sum() * 0.0
    logits = gates[has].float()  # [n, K, H*W, G]
    target = density[has].clamp(max=1.0)[:, None, :, None].expand_as(logits)  # [n, K, H*W, G]
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(2)  # [n, K, G]
    # the scorer reads the *sum* of the gates: cell errors that each look small (49 background cells at 0.02 add
    # up to a whole object) are pulled to the box count directly, not only through each cell
    mass_error = (torch.sigmoid(logits).sum(2) - density[has].sum(1)[:, None, None]) ** 2  # [n, K, G]
    return (bce + mass_error).mean((1, 2)).sum() / b


# ------------------------------------------------------------------------------------------------ metrics
def is_uniform(attention: np.ndarray) -> bool:
    """True when a map has no peak (max == min, up to float noise): its argmax would be an arbitrary cell."""
    return bool(np.ptp(attention) < 1e-9)


def grounding_scores(
    attention: np.ndarray, boxes: list[Box], width: int, height: int, uniform: bool = False
) -> tuple[bool | None, float]:
    """(hit: the peak falls in a box; attention mass in the boxes) for one ``[H, W]`` map of a ``width x height`` image.
    The hit is None for a uniform map (or ``uniform=True``, a variant that never attends): it has no peak to point."""
    h, w = attention.shape
    hit: bool | None = None
    if not (uniform or is_uniform(attention)):
        i, j = np.unravel_index(int(np.argmax(attention)), attention.shape)
        px, py = (j + 0.5) * width / w, (i + 0.5) * height / h  # centre of the peak cell, in image pixels
        hit = any(b.x <= px < b.x + b.width and b.y <= py < b.y + b.height for b in boxes)
    mass = float((attention * box_coverage(boxes, width, height, h, w)).sum() / max(attention.sum(), 1e-12))
    return hit, mass


def grounding_summary(hits: list[bool | None], masses: list[float]) -> dict[str, Any]:
    """``{"n", "hit", "mass"}`` over the grounded questions; hit averages only the maps that have a peak
    (None when none has), mass averages all of them."""
    pointed = [h for h in hits if h is not None]
    return {"n": len(hits), "hit": float(np.mean(pointed)) if pointed else None,
            "mass": float(np.mean(masses)) if masses else None}  # fmt: skip
