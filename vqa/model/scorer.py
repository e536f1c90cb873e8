"""The score of each (image, question, candidate): an MLP over what was seen, the question and the candidate.

    score_k = MLP([(P_q q) * (P_a a_k) ; (P_c c_k) * (P_s [q ; a_k]) ; c_k ; q ; a_k])      [B, K]

Following the seeds and the strong Visual7W models, the candidate answer is an *input*: each triple gets a score
and the argmax wins.
"""

from __future__ import annotations

import torch
from torch import nn

from .noop import Empty
from .spec import ModelSpec


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_dim))  # fmt: skip


class Compare(nn.Module):
    """tanh(P_x x) * tanh(P_y y): lets the scorer *compare* two things. An MLP over their concatenation alone has
    to learn that product from ReLUs, and learns it very slowly."""

    def __init__(self, x_dim: int, y_dim: int, out_dim: int) -> None:
        super().__init__()
        self.x, self.y = nn.Linear(x_dim, out_dim), nn.Linear(y_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.x(x)) * torch.tanh(self.y(y))  # [.., out_dim]


class Scorer(nn.Module):
    """The fusion scorer; its comparisons exist where there is something to compare."""

    def __init__(self, spec: ModelSpec, ctx_dim: int, q_dim: int, a_dim: int, asked: nn.Module) -> None:
        super().__init__()
        hidden = spec.hidden_dim
        # what the image showed against what [question; candidate] says (nothing to compare without an image)
        self.seen = Compare(ctx_dim, q_dim + a_dim, hidden) if ctx_dim else Empty()
        self.asked = asked  # the candidates' own comparison with the question (``parts.py``; text: none)
        in_dim = self.asked.out_dim + self.seen.out_dim + ctx_dim + q_dim + a_dim
        self.mlp = _mlp(in_dim, 2 * hidden, 1, spec.dropout)

    def forward(self, ctx: torch.Tensor, qk: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        # ctx [B, K, C], qk [B, K, Dq] (the question, once per candidate), a [B, K, Da] -> scores [B, K]
        seen = self.seen(ctx, torch.cat([qk, a], dim=-1))  # [B, K, hidden] (or [B, K, 0])
        asked = self.asked(qk, a)  # [B, K, hidden] (or [B, K, 0]): after ``seen``, so gradients sum as they did
        return self.mlp(torch.cat([asked, seen, ctx, qk, a], dim=-1)).squeeze(-1)  # [B, K]
