"""The no-op parts: what a slot holds when the settings leave it empty.

A slot of the network (the cells' neighbourhood, the pointing relations, the counting path, ...) always holds a
part, chosen when the model is built; an empty slot holds one of these. ``forward`` then reads the same for every
setting, with no ``if`` on what was built.
"""

from __future__ import annotations

import torch
from torch import nn


class Keep(nn.Module):
    """An empty slot that adds to its first input: passes that input on unchanged."""

    out_dim = 0  # features it adds

    def forward(self, x: torch.Tensor, *_: object) -> torch.Tensor:
        return x


class Empty(nn.Module):
    """An empty slot whose output is concatenated: zero features, ``x``'s leading shape and dtype."""

    out_dim = 0

    def forward(self, x: torch.Tensor, *_: object) -> torch.Tensor:
        return x.new_zeros(*x.shape[:-1], 0)  # [.., 0]: its dtype is one the concatenation already has
