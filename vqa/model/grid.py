"""The image side: CNN grid cells projected (with their position), and the pointing task's candidate boxes.

Without the (x, y) of each cell the grid is a bag of cells and "where" questions fall to chance; the boxes of
pointing are read from the same projected cells, so a box's encoding says what the image holds inside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from .noop import Keep
from .spec import CONTEXT_GROUPS, ModelSpec


class CellContext(nn.Module):
    """``cell_context`` k > 0: each projected cell also sees its k x k neighbours (a grouped conv, residual).
    A glyph spans several cells of a 14 x 14 grid: one cell alone holds a fragment of it."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(d, d, k, padding=k // 2, groups=CONTEXT_GROUPS)

    def forward(self, cells: torch.Tensor, h: int, w: int) -> torch.Tensor:
        grid = cells.transpose(1, 2).reshape(-1, cells.shape[2], h, w)  # [I, D, H, W]
        return cells + F.relu(self.conv(grid)).flatten(2).transpose(1, 2)  # [I, N, D]


class GridCells(nn.Module):
    """[I, C, H, W] -> [I, H*W, D]: v_ij = ReLU(LayerNorm(W_f f_ij) + W_p (x_j, y_i)), coordinates in [-1, 1].

    LayerNorm puts the cells on one scale whatever the CNN; without it their projection is tiny next to the
    query, the attention logits barely differ between cells, and attention takes many epochs to start.
    Dropout acts on the projected cells (D values per cell), not on the raw C-channel grid: a mask per raw
    element cost a fifth of a training step on the CPU (C = 1344..2048 against D = 256..512).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        c, d, k = spec.grid[0], spec.attention_dim, spec.cell_context
        self.cells = nn.Sequential(nn.Linear(c, d), nn.LayerNorm(d))  # cell features -> [.., D]
        self.where = nn.Linear(2, d)  # (x, y) -> [.., D], added: position on the same scale as content
        self.context = CellContext(d, k) if k else Keep()
        self.drop = nn.Dropout(spec.dropout)
        self.out_dim = d

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h, w = features.shape[2:]
        ys = (torch.arange(h, device=features.device, dtype=torch.float32) + 0.5) / h * 2 - 1
        xs = (torch.arange(w, device=features.device, dtype=torch.float32) + 0.5) / w * 2 - 1
        pos = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).view(h * w, 2)  # [N, 2]: (x, y)
        cells = F.relu(self.cells(features.flatten(2).transpose(1, 2).float()) + self.where(pos))  # [I, N, D]
        return self.drop(self.context(cells, h, w))  # [I, N, D]


class NoGrid(nn.Module):
    """blind and answer_only never see the image: no cells (``None``)."""

    out_dim = 0

    def forward(self, features: torch.Tensor) -> None:
        return None


class BoxContent(nn.Module):
    """What the grid holds inside a box: the projected cells (with their position channels) ``roi_align``-pooled
    over the box onto ROI x ROI bins, flattened and projected."""

    ROI = 2  # bins per side: a box is 1-3 cells of a 7x7 grid

    def __init__(self, cell_dim: int, out_dim: int, grid_hw: tuple[int, int]) -> None:
        super().__init__()
        self.proj = nn.Linear(cell_dim * self.ROI**2, out_dim)
        self.grid_hw = grid_hw

    def forward(self, out: torch.Tensor, boxes: torch.Tensor, cells: torch.Tensor,
                image_index: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        # out [B, K, out] (the geometry), boxes [B, K, 4], cells [I, H*W, D], image_index [B] (None: I = B)
        (b, k, _), (h, w) = boxes.shape, self.grid_hw
        fmap = cells.transpose(1, 2).reshape(cells.shape[0], -1, h, w)  # [I, D, H, W]
        index = image_index if image_index is not None else torch.arange(b, device=boxes.device)
        scale = torch.tensor([w, h, w, h], dtype=fmap.dtype, device=boxes.device)  # to grid units
        rois = torch.cat([index.repeat_interleave(k)[:, None].to(fmap.dtype),
                          boxes.reshape(b * k, 4).to(fmap.dtype) * scale], dim=1)  # [B*K, 5]  # fmt: skip
        pooled = roi_align(fmap, rois, output_size=self.ROI, spatial_scale=1.0, sampling_ratio=2, aligned=True)
        return out + self.proj(pooled.flatten(1)).view(b, k, -1)  # [B, K, out]


class BoxEncoder(nn.Module):
    """Pointing: a candidate box -> ``[.., out_dim]``, from where it is and what the grid holds inside it.

    Geometry: (x0, y0, x1, y1, width, height, area) in [0, 1] of the image, through an MLP. Content:
    ``BoxContent``; the blind variant has geometry only. A box's name and id never get here.
    """

    def __init__(self, cell_dim: int | None, out_dim: int, grid_hw: tuple[int, int]) -> None:
        super().__init__()
        self.geometry = nn.Sequential(nn.Linear(7, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))
        self.content = BoxContent(cell_dim, out_dim, grid_hw) if cell_dim else Keep()
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, boxes: torch.Tensor, cells: torch.Tensor | None,
                image_index: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        # boxes [B, K, 4] (x0, y0, x1, y1) in [0, 1]; cells [I, H*W, D] (None: blind); image_index [B]
        x0, y0, x1, y1 = boxes.float().unbind(-1)
        out = self.geometry(torch.stack([x0, y0, x1, y1, x1 - x0, y1 - y0, (x1 - x0) * (y1 - y0)], dim=-1))
        return self.norm(self.content(out, boxes, cells, image_index))  # [B, K, out]


class BoxCandidates(nn.Module):
    """Pointing's candidates slot: a_k = the box encoding (``candidates`` holds one [UNK] each, never read)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.out_dim = spec.hidden_dim
        cell_dim = spec.attention_dim if spec.sees_image else None
        self.boxes = BoxEncoder(cell_dim, self.out_dim, spec.grid[1:])
        self.drop = nn.Dropout(spec.dropout)

    def forward(self, embed: nn.Embedding, candidates: torch.Tensor, lengths: torch.Tensor,
                boxes: torch.Tensor | None, cells: torch.Tensor | None,
                image_index: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        if boxes is None:
            raise ValueError("a pointing model needs the candidates' boxes [B, K, 4]")
        return self.drop(self.boxes(boxes, cells, image_index))  # [B, K, Da]


def relative_cells(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, K, 4] boxes (x0, y0, x1, y1 in [0, 1]) -> [B, K, H*W, 3]: every grid cell's centre relative to each box
    (dx, dy from the box centre, in image halves) and whether it lies inside the box.

    Why: "Which object is left of the red star?" is answered by the candidate whose right neighbour is the red
    star. With these offsets inside the attention MLP, the attention of a candidate can look *next to it* in the
    direction the question names; additive cell positions alone cannot express "one cell right of this box"."""
    ys = (torch.arange(h, device=boxes.device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=boxes.device, dtype=torch.float32) + 0.5) / w
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    cx, cy = cx.reshape(1, 1, -1), cy.reshape(1, 1, -1)  # [1, 1, N]
    x0, y0, x1, y1 = (t.unsqueeze(-1) for t in boxes.float().unbind(-1))  # [B, K, 1] each
    inside = ((cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)).float()
    return torch.stack([2 * (cx - (x0 + x1) / 2), 2 * (cy - (y0 + y1) / 2), inside], dim=-1)  # [B, K, N, 3]
