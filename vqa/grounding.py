"""Grounding boxes on the feature grid.

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
from PIL import Image

from .data import Box, load_grounding


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


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    with Image.open(path) as img:
        return img.size


def grounding_boxes(cfg: Any, dataset: Any) -> dict[int, list[Box]] | None:
    """Grounding boxes by qa_id: telling's ``data.grounding`` file (None when not given); for pointing, each QA's
    answer box (the object the question is about)."""
    if getattr(dataset, "regions", None) is not None:
        return {q.qa_id: [Box(q.qa_id, r.name, r.x, r.y, r.width, r.height) for r in [dataset.regions[int(q.answer)]]]
                for q in dataset.qa}  # fmt: skip
    return load_grounding(cfg.data.grounding) if cfg.data.grounding else None


def grounding_targets(cfg: Any, dataset: Any, grid: tuple[int, int, int]) -> list[list[float]] | None:
    """Per QA, a density of its grounding boxes on the feature grid: each box's coverage normalised to sum 1, then
    summed, so the row sums to the number of boxes ([] without a box). The attention loss normalises it; the
    counting gates learn it as is (their mass is then the number of objects the question is about)."""
    boxes = grounding_boxes(cfg, dataset)
    if boxes is None:
        return None
    sizes: dict[int, tuple[int, int]] = {}
    out = []
    for q in dataset.qa:
        if q.qa_id not in boxes:
            out.append([])
            continue
        if q.image_id not in sizes:
            sizes[q.image_id] = image_size(dataset.image_path(q.image_id))
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
