"""Attention over the grid cells: glimpses driven by each candidate (additive or bilinear), and by the question.

For candidate k and cell n, with s_k = W_s [q ; a_k]:

    additive   h_kn = tanh(W_v v_n + s_k)             the seeds' f_att MLP (pointing: + W_r r_kn, ``BoxGlimpses``)
    bilinear   h_kn = tanh(W_v v_n) * tanh(s_k)       MLB (Kim et al. 2017), never built as a [B, K, N, D] tensor
    e_kn^g = w_g . h_kn,   att^g = softmax_n(e^g),   c_k = [sum_n att_kn^g v_n]_g

The two forms are separate parts with one interface, ``(cells, s, rel, image_index) -> (projected cells,
attention logits, gate logits or None)``, so the look that uses them never asks which form it holds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

WithGates = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # two tensors, then gate logits (None: no counting)


def per_image_bmm(images: torch.Tensor, rows: torch.Tensor, image_index: torch.Tensor | None) -> torch.Tensor:
    """images [I, P, D], rows [B, R, D], image_index [B] (None: I = B) -> [B, P, R]: for every question b,
    images[image_index[b]] @ rows[b].T.

    Why not gather ``images[image_index]`` first: that copies an image's [P, D] grid for each of its questions
    ([B, N, D] written, and scattered back in the backward). Here each image's questions' small [R, D] rows are
    stacked in per-image slots, and one bmm over the I images multiplies each grid once by all of them.
    """
    if image_index is None:
        return torch.bmm(images, rows.transpose(1, 2))  # [B, P, R]
    same = image_index[:, None] == image_index[None, :]  # [B, B]
    slot = torch.tril(same, diagonal=-1).sum(1)  # [B]: earlier questions of the batch about the same image
    n_slots = int(slot.max()) + 1
    (i, p, d), r = images.shape, rows.shape[1]
    stacked = rows.new_zeros(i, n_slots, r, d).index_put((image_index, slot), rows)  # [I, slots, R, D]
    out = torch.bmm(images, stacked.view(i, n_slots * r, d).transpose(1, 2))  # [I, P, slots*R]
    return out.view(i, p, n_slots, r)[image_index, :, slot]  # [B, P, R]


def per_question(x: torch.Tensor, image_index: torch.Tensor | None) -> torch.Tensor:
    """[I, ..] per image -> [B, ..] per question (None: already one per question)."""
    return x if image_index is None else x[image_index]


def glimpse_context(cells: torch.Tensor, att: torch.Tensor, image_index: torch.Tensor | None) -> torch.Tensor:
    """cells [I, N, D], att [B, K, N, G] -> c [B, K, G*D]: each glimpse's attention-weighted sum of the cells."""
    b, k, n, g = att.shape
    rows = att.to(cells.dtype).permute(0, 1, 3, 2).reshape(b, k * g, n)  # [B, K*G, N]
    ctx = per_image_bmm(cells.transpose(1, 2), rows, image_index)  # [B, D, K*G]: sum_n att v_n
    return ctx.transpose(1, 2).reshape(b, k, -1)  # [B, K, G*D]


class Heads(nn.Module):
    """The per-cell heads that read the hidden state h_kn: G attention logits."""

    def __init__(self, d: int, glimpses: int) -> None:
        super().__init__()
        self.att_w = nn.Linear(d, glimpses)

    def weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.att_w.weight, self.att_w.bias  # [J, D], [J]

    def split(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return logits, None  # [.., G] attention logits; no gate logits


class CountingHeads(Heads):
    """... and G counting-gate logits ("this cell matches"), out of the same product as the attention logits:
    each alone is a thin [.., D] x [D, G] product."""

    def __init__(self, d: int, glimpses: int) -> None:
        super().__init__(d, glimpses)
        # most cells hold no object: start the gates near 0.02, not 0.5 (RetinaNet's prior), or their first
        # mass is ~N/2 whatever the image and the first epochs go to unlearning it
        self.count_w = nn.Linear(d, glimpses)
        nn.init.constant_(self.count_w.bias, -4.0)

    def weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([self.att_w.weight, self.count_w.weight]), torch.cat([self.att_w.bias, self.count_w.bias])

    def split(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        g = self.att_w.out_features
        return logits[..., :g], logits[..., g:]  # [.., G] attention logits, [.., G] gate logits


class Glimpses(nn.Module):
    """What both attention forms learn: W_v for the cells, W_s for [question; candidate], and the heads."""

    def __init__(self, d: int, s_dim: int, heads: Heads) -> None:
        super().__init__()
        self.att_v = nn.Linear(d, d, bias=False)
        self.att_s = nn.Linear(s_dim, d)
        self.heads = heads


class AdditiveGlimpses(Glimpses):
    """h_kn = tanh(W_v v_n + s_k): a [B, K, N, D] hidden state, but the one form where something per (candidate,
    cell) can join inside the tanh (``BoxGlimpses``)."""

    def forward(self, cells: torch.Tensor, s: torch.Tensor, rel: torch.Tensor | None,
                image_index: torch.Tensor | None, evidence: torch.Tensor | float) -> WithGates:  # fmt: skip
        # cells [I, N, D], s [B, K, Dq+Da], evidence [B, K, N, 1] (or 0.0) -> projected cells per question
        # [B, N, D], logits [B, K, N, G] (x2)
        proj = per_question(self.att_v(cells), image_index)  # [B, N, D]
        pre = self.hidden(proj.unsqueeze(1) + self.att_s(s).unsqueeze(2), rel)  # [B, K, N, D]
        weight, bias = self.heads.weight_and_bias()
        return proj, *self.heads.split(F.linear(torch.tanh(pre), weight, bias).float() + evidence)

    def hidden(self, pre: torch.Tensor, rel: torch.Tensor | None) -> torch.Tensor:
        return pre


class BoxGlimpses(AdditiveGlimpses):
    """Pointing: + W_r r_kn, where cell n lies from candidate box k, so that the attention of a candidate can look
    next to it in the direction the question names ("left of the X")."""

    def __init__(self, d: int, s_dim: int, heads: Heads) -> None:
        super().__init__(d, s_dim, heads)
        self.att_r = nn.Linear(3, d, bias=False)

    def hidden(self, pre: torch.Tensor, rel: torch.Tensor | None) -> torch.Tensor:
        return pre + self.att_r(rel)  # [B, K, N, D]


def factorised_logits(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      image_index: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    """The MLB logits w_j . (x_n * y_r) + b_j of every cell n and row r, as w_j . (x_n * y_r) = x_n . (y_r * w_j):
    one batched GEMM of each image's cells with its questions' weighted rows, never a [B, R, N, D] tensor.
    x [I, N, D] (tanh'd cells), y [B, R, D] (tanh'd rows), weight [J, D], bias [J] -> [B, N, R, J]."""
    b, r, d = y.shape
    rows = (y.unsqueeze(2) * weight).view(b, -1, d)  # [B, R*J, D]
    return per_image_bmm(x, rows, image_index).view(b, -1, r, weight.shape[0]) + bias  # [B, N, R, J]


class BilinearGlimpses(Glimpses):
    """h_kn = tanh(W_v v_n) * tanh(s_k) (MLB, Kim et al. 2017), without the [B, K, N, D] hidden state.

    Why: the additive tanh(W_v v_n + s_k) is a [B, K, N, D] tensor (K candidates x N cells x D) whose tanh,
    its backward and the thin head product that reads it took a quarter of a Visual7W training step on a
    CPU. The product factorises: w . (x_n * y_k) = x_n . (y_k * w), so the logits are one batched GEMM of
    each question's [N, D] cells with its [D, K*J] candidate-weighted heads, and tanh runs on [I, N, D] once.
    """

    def forward(self, cells: torch.Tensor, s: torch.Tensor, rel: torch.Tensor | None,
                image_index: torch.Tensor | None, evidence: torch.Tensor | float) -> WithGates:  # fmt: skip
        # cells [I, N, D], s [B, K, Dq+Da], evidence [B, K, N, 1] (or 0.0) -> projected cells per image [I, N, D],
        # logits [B, K, N, G] (x2)
        proj = self.att_v(cells)  # [I, N, D]
        return proj, *self.heads.split(self.logits(proj, self.att_s(s), image_index).float() + evidence)

    def logits(self, proj: torch.Tensor, s: torch.Tensor, image_index: torch.Tensor | None) -> torch.Tensor:
        """[I, N, D] projected cells, [B, K, D] projected [q; a_k] -> [B, K, N, J] head logits."""
        weight, bias = self.heads.weight_and_bias()  # [J, D], [J]
        return factorised_logits(torch.tanh(proj), torch.tanh(s), weight, bias, image_index).transpose(1, 2)


def additive_seek(s: torch.Tensor, head: nn.Linear, proj: torch.Tensor,
                  image_index: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    """Question-driven logits tanh(P v_n + s) -> [B, N, Gq]. ``proj`` comes from ``AdditiveGlimpses``, already one
    per question [B, N, D] (``image_index`` is not needed again)."""
    return head(torch.tanh(proj + s.unsqueeze(1)))  # [B, N, Gq]


def bilinear_seek(s: torch.Tensor, head: nn.Linear, proj: torch.Tensor,
                  image_index: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    """Question-driven logits tanh(P v_n) * tanh(s), one GEMM per image: proj [I, N, D], s [B, D] -> [B, N, Gq]."""
    return factorised_logits(torch.tanh(proj), torch.tanh(s).unsqueeze(1), head.weight, head.bias,
                             image_index).squeeze(2)  # [B, N, Gq]


class QuestionGlimpses(nn.Module):
    """Telling: Gq glimpses driven by the question alone, the same for every candidate.

    Why: a candidate-driven attention can find evidence for *each* candidate ("Red." looks at the red object,
    "Blue." at the blue one) when every candidate is something the image shows; without grounding boxes it learns
    exactly that and stalls at chance. The question's own glimpse must find what the question is about.
    """

    def __init__(self, q_dim: int, d: int, gq: int, seek: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.seek_t = nn.Linear(q_dim, d)
        self.seek_tw = nn.Linear(d, gq)  # attention logits
        self.seek = seek  # additive_seek | bilinear_seek: the form of the candidate glimpses
        self.out_dim = d * gq

    def forward(self, att: torch.Tensor, ctx: torch.Tensor, gates: torch.Tensor | None, proj: torch.Tensor,
                cells: torch.Tensor, q: torch.Tensor, image_index: torch.Tensor | None,
                evidence: torch.Tensor | float) -> WithGates:  # fmt: skip
        """The candidate glimpses' att [B, K, N, G], ctx [B, K, C] and gates, with the question's glimpses added:
        att [B, K, N, G + Gq], ctx [B, K, C + Gq*D], and the gates to count. ``evidence`` [B, N, 1] (or 0.0): where
        the question's words are seen (``evidence.py``), added to the logits."""
        k = att.shape[1]
        logits = self.seek(self.seek_t(q), self.seek_tw, proj, image_index).float() + evidence  # [B, N, Gq]
        att_q = F.softmax(logits, dim=1)  # [B, N, Gq]
        ctx_q = per_image_bmm(cells.transpose(1, 2), att_q.to(cells.dtype).transpose(1, 2), image_index)  # [B, D, Gq]
        ctx_q = ctx_q.transpose(1, 2).reshape(q.shape[0], 1, -1).expand(-1, k, -1)  # [B, K, Gq*D]
        att = torch.cat([att, att_q.unsqueeze(1).expand(-1, k, -1, -1)], dim=-1)  # [B, K, N, G + Gq]
        return att, torch.cat([ctx, ctx_q], dim=-1), self.gates(logits, gates, k)

    def gates(self, logits: torch.Tensor, gates: torch.Tensor | None, k: int) -> torch.Tensor | None:
        return gates  # not counted here: the candidate glimpses' gates (None: no counting path)


class CountingQuestionGlimpses(QuestionGlimpses):
    """... and what the question is about, counted: gate = sigmoid(a * e + b) of the glimpses' own logits e."""

    def __init__(self, q_dim: int, d: int, gq: int, seek: Callable[..., torch.Tensor]) -> None:
        super().__init__(q_dim, d, gq, seek)
        self.gate = nn.Parameter(torch.tensor([[1.0] * gq, [-4.0] * gq]))  # [2, Gq]: (a, b) per glimpse

    def gates(self, logits: torch.Tensor, gates: torch.Tensor | None, k: int) -> torch.Tensor | None:
        return (logits * self.gate[0] + self.gate[1]).unsqueeze(1).expand(-1, k, -1, -1)  # [B, K, N, Gq]


class NoQuestionGlimpses(nn.Module):
    """No question glimpses (pointing, no question read, or ``question_glimpses=0``): passes the glimpses on."""

    out_dim = 0

    def forward(self, att: torch.Tensor, ctx: torch.Tensor, gates: torch.Tensor | None, *_: object) -> WithGates:
        return att, ctx, gates
