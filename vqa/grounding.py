"""Grounding boxes on the feature grid.

The features stage squash-resizes every image to S x S, so grid cell (i, j) of an H x W grid covers
``x in [j*W_img/W, (j+1)*W_img/W)``, ``y in [i*H_img/H, (i+1)*H_img/H)`` of the original image. This module maps
grounding boxes (absolute pixels) onto those cells: used as an optional attention target in training, and for the
grounding metrics of evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .data import Box


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
