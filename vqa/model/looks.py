"""How each variant looks at the image: one part per variant, all with the same interface.

``look(cells, q, qk, a, boxes, image_index) -> (context [B, K, C], attention [B, K, H*W, G], gate logits | None)``

  ``NoLook``    blind, answer_only: no image, no context
  ``MeanLook``  no_attention: c = the mean of the cells (a bag of features, for comparison)
  ``Look``      attention, image_only: glimpses per candidate, then what the task and settings add to their
                context: pointing's relations to the box, the question's own glimpses, the counting path

A softmax attention sums to 1 over the cells whatever it looks at, so its context cannot tell one circle from
three: the counting path (``model.count``) gives the scorer how *much* of the image matches [question; candidate].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import WithGates, additive_seek, glimpse_context, per_question
from .evidence import Evidence
from .grid import relative_cells
from .spec import ModelSpec


def uniform_maps(a: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """[B, K, H*W, G] maps that look everywhere alike: what the variants that do not attend return."""
    _, h, w = spec.grid
    return torch.full((*a.shape[:2], h * w, spec.glimpses), 1.0 / (h * w), device=a.device)


class NoLook(nn.Module):
    """blind, answer_only: no image; the context is empty ([B, K, 0])."""

    out_dim = 0

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, cells: None, q: torch.Tensor, qk: torch.Tensor, a: torch.Tensor, *_: object) -> WithGates:
        return a.new_zeros(*a.shape[:2], 0), uniform_maps(a, self.spec), None


class MeanLook(nn.Module):
    """no_attention: c = the mean of the cells, the same for every candidate."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.out_dim = spec.attention_dim

    def forward(self, cells: torch.Tensor, q: torch.Tensor, qk: torch.Tensor, a: torch.Tensor,
                boxes: torch.Tensor | None, image_index: torch.Tensor | None, *_: object) -> WithGates:  # fmt: skip
        ctx = per_question(cells.mean(1), image_index)  # [B, D]
        return ctx.unsqueeze(1).expand(-1, a.shape[1], -1), uniform_maps(a, self.spec), None  # [B, K, D]


class BoxOffsets(nn.Module):
    """Pointing: where every cell lies from each candidate box (``relative_cells``), [B, K, H*W, 3]."""

    def __init__(self, grid_hw: tuple[int, int]) -> None:
        super().__init__()
        self.grid_hw = grid_hw

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        return relative_cells(boxes, *self.grid_hw)


class NoOffsets(nn.Module):
    """Telling: the candidates are text, they have no place in the image."""

    def forward(self, boxes: torch.Tensor | None) -> None:
        return None


class Relations(nn.Module):
    """Pointing: where what each glimpse found lies from the box ("is the red star right of me?"):
    sum_n att_kn^g r_kn, [B, K, G*3], through an MLP -> [B, K, D]."""

    def __init__(self, glimpses: int, d: int) -> None:
        super().__init__()
        self.relate = nn.Sequential(nn.Linear(3 * glimpses, d), nn.ReLU(), nn.Linear(d, d))
        self.out_dim = d

    def forward(self, ctx: torch.Tensor, att: torch.Tensor, proj: torch.Tensor, q: torch.Tensor,
                rel: torch.Tensor, evidence: torch.Tensor | float = 0.0) -> torch.Tensor:  # fmt: skip
        offset = torch.einsum("bkng,bknr->bkgr", att, rel).flatten(2)  # [B, K, G*3]
        return torch.cat([ctx, self.relate(offset).to(ctx.dtype)], dim=-1)  # [B, K, C + D]


class RelationsAndPlace(Relations):
    """... and, when the question is read, a glimpse driven by the question alone (what it names, wherever the
    candidates are) and where that glimpse lies from each box: [B, K, 3] through an MLP -> [B, K, D]."""

    def __init__(self, glimpses: int, q_dim: int, d: int) -> None:
        super().__init__(glimpses, d)
        self.seek_q = nn.Linear(q_dim, d)
        self.seek_w = nn.Linear(d, 1)
        self.placed = nn.Sequential(nn.Linear(3, d), nn.ReLU(), nn.Linear(d, d))
        self.out_dim = 2 * d

    def forward(self, ctx: torch.Tensor, att: torch.Tensor, proj: torch.Tensor, q: torch.Tensor,
                rel: torch.Tensor, evidence: torch.Tensor | float = 0.0) -> torch.Tensor:  # fmt: skip
        """``evidence`` [B, N, 1] (or 0.0): where the question's words are seen (``BoxEvidence``), added to the
        logits of the glimpse that finds what the question names."""
        ctx = super().forward(ctx, att, proj, q, rel)  # [B, K, C + D]
        logits = additive_seek(self.seek_q(q), self.seek_w, proj, None).float() + evidence  # [B, N, 1] (per question)
        att_q = F.softmax(logits.squeeze(-1), dim=1)  # [B, N]
        placed = torch.einsum("bn,bknr->bkr", att_q, rel)  # [B, K, 3]: (dx, dy, share inside)
        return torch.cat([ctx, self.placed(placed).to(ctx.dtype)], dim=-1)  # [B, K, C + 2D]


class Count(nn.Module):
    """[B, K, N, G] gate logits -> f(m) [B, K, D], m = sum over cells of the sigmoid gates, added to the context.

    Unlike the softmax, the sigmoid gates are not normalised: two matching objects light twice the cells of
    one, and m says so (with grounding boxes, training pulls each object's gates to a mass of 1). Fed as
    (m / 4, log(1 + m)) so small and large counts are both on a usable scale.
    """

    def __init__(self, gates: int, d: int) -> None:
        super().__init__()
        self.counter = nn.Sequential(nn.Linear(2 * gates, d), nn.ReLU(), nn.Linear(d, d))
        self.out_dim = d

    def forward(self, ctx: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        mass = torch.sigmoid(gates).sum(2)  # [B, K, G]
        counted = self.counter(torch.cat([mass / 4, torch.log1p(mass)], dim=-1))  # [B, K, D]
        return torch.cat([ctx, counted.to(ctx.dtype)], dim=-1)  # [B, K, C + D]


class Look(nn.Module):
    """attention, image_only: G glimpses per candidate and what the parts chosen at build time add to them."""

    def __init__(self, glimpses: nn.Module, offsets: nn.Module, relations: nn.Module, question_glimpses: nn.Module,
                 count: nn.Module, d: int, g: int) -> None:  # fmt: skip
        super().__init__()
        self.glimpses, self.offsets, self.relations = glimpses, offsets, relations
        self.question_glimpses, self.count = question_glimpses, count
        self.out_dim = d * g + relations.out_dim + question_glimpses.out_dim + count.out_dim

    def forward(self, cells: torch.Tensor, q: torch.Tensor, qk: torch.Tensor, a: torch.Tensor,
                boxes: torch.Tensor | None, image_index: torch.Tensor | None,
                evidence: Evidence) -> WithGates:  # fmt: skip
        # cells [I, N, D], q [B, Dq], qk [B, K, Dq] (q once per candidate), a [B, K, Da], boxes [B, K, 4] | None;
        # evidence: where the words are seen (``evidence.py``), added to the glimpses' logits
        s = torch.cat([qk, a], dim=-1)  # [B, K, Dq+Da]
        rel = self.offsets(boxes)  # pointing: [B, K, N, 3]; telling: None
        proj, logits, gates = self.glimpses(cells, s, rel, image_index, evidence.candidates)  # logits [B, K, N, G]
        att = F.softmax(logits, dim=2)  # [B, K, N, G], over the N cells
        ctx = glimpse_context(cells, att, image_index)  # [B, K, G*D]
        ctx = self.relations(ctx, att, proj, q, rel, evidence.question)  # pointing: + [B, K, D] (+ D, question read)
        att, ctx, gates = self.question_glimpses(att, ctx, gates, proj, cells, q, image_index, evidence.question)
        return self.count(ctx, gates), att, gates  # counting: + f(m) [B, K, D]
