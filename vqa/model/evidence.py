"""Word evidence: where the image shows what each word names, and how much the best cell says for each candidate.

Why: trained on the answers alone, attention over the cells never leaves its start. Every distractor is
something the image shows, so no candidate scores better than another until attention finds the object the
question names, and attention learns to find it only from a scorer that already tells the candidates apart
(docs/model.md#word-evidence has the measurements). Evidence per *word* breaks that circle:

    key_n   = tanh(W_k v_n)                                       each cell, as the words see it       [I, N, D]
    r_t     = sigmoid(g . e_t) W_w e_t / sqrt(D)                  each word, weighted by how much it names
    eq_n    = sum_{t in question} r_t . key_n                     where the question's words are seen   [B, N]
    ea_kn   = sum_{t in candidate k} r_t . key_n                  where candidate k's words are seen    [B, K, N]
    score_k = s (logsumexp_n (eq_n + ea_kn) - log N)              the best cell for question *and* candidate

The score is multiple-instance pooling: its gradient reaches the cells through softmax_n(eq + ea_k), so the
candidate whose words and the question's words meet on one object wins, and learning where a word is seen is
first-order. What makes it so is the image-text matching loss (``matching``): the true answer's evidence on its
own image against the other images of the batch. "Red" and "the dotted star" are on this image, not always on
the others, so each word learns where it is seen from the first steps, no grounding box needed. The same
``eq`` and ``ea`` are added to the attention logits (``Look``): the glimpses start where the words point.

Counting: a softmax cannot count and the best cell says nothing of how many. ``CountEvidence`` counts the peaks
of the question's evidence (one per object, whatever its size on the grid) and compares the count with the number
each candidate names; in the matching loss too, where "Two." is right on its own page and wrong on a page with
three digits, which teaches what "digits" are.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import per_image_bmm, per_question


class Evidence(NamedTuple):
    """What ``WordEvidence`` gives the rest of the model, each term shaped to be added where it goes (0.0 where there
is no evidence part, so the parts that add it never ask)."""

    score: torch.Tensor | float  # [B, K] added to the candidates' scores
    question: torch.Tensor | float  # [B, N, 1] where the question's words are seen: added to its glimpses' logits
    candidates: torch.Tensor | float  # [B, K, N, 1] ... the question's and candidate k's: the candidate glimpses'
    matching: torch.Tensor | None  # [B, K, I] each candidate's evidence on every image of the batch (training)


NONE = Evidence(0.0, 0.0, 0.0, None)  # no evidence: each term adds nothing


def matching_loss(matching: torch.Tensor, label: torch.Tensor, image_index: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of the true answer's evidence on its own image against the batch's other images.

    matching [B, K, I], label [B], image_index [B] (None: one image per question, I = B). A batch of one image
    has nothing to contrast: 0. Why per question and not per image: each question names its own words."""
    b = matching.shape[0]
    own = image_index if image_index is not None else torch.arange(b, device=matching.device)
    logits = matching[torch.arange(b, device=matching.device), label]  # [B, I]
    if logits.shape[1] < 2:
        return logits.sum() * 0.0
    return F.cross_entropy(logits, own.to(logits.device))


def mean_embedding(embed: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """[.., L] token ids -> [.., E] the mean of their embeddings, padding excluded (zeros for no word)."""
    mask = (ids != 0).unsqueeze(-1).float()  # [.., L, 1]
    return (embed(ids) * mask).sum(-2) / mask.sum(-2).clamp(min=1)


class CountEvidence(nn.Module):
    """-pi(q) (m - nu_k)^2: the count m of the question's evidence peaks against the number nu_k candidate k names.

    m = sum_n sigmoid(alpha eq_n + c(v_n) + b) over the cells that are a 3 x 3 local maximum of that logit: one
    peak per object whatever the cells it covers (a sum of sigmoid gates counts area, not objects). c(v_n)
    learns where an object's centre is; nu_k is read off the candidate's words; pi(q) >= 0 says how much the
    question is about a number, so the term vanishes where it is not.
    """

    def __init__(self, embed_dim: int, d: int, grid_hw: tuple[int, int]) -> None:
        super().__init__()
        self.grid_hw = grid_hw
        self.center = nn.Linear(d, 1)  # c(v_n)
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.bias = nn.Parameter(torch.tensor(0.0))
        self.number = nn.Linear(embed_dim, 1)  # nu_k
        self.asks = nn.Linear(embed_dim, 1)  # pi(q), before the softplus
        nn.init.constant_(self.asks.bias, -2.0)  # start small: most questions ask no number

    def forward(self, embed: nn.Embedding, cells: torch.Tensor, eq: torch.Tensor, question: torch.Tensor,
                candidates: torch.Tensor, image_index: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        """cells [I, N, D], eq [B, N], question [B, Lq], candidates [B, K, La] -> [B, K] score terms."""
        count = self.counted(eq, per_question(self.center(cells).squeeze(-1), image_index))  # [B]
        return self.compare(count.unsqueeze(1), embed, question, candidates)  # [B, K]

    def matching(self, embed: nn.Embedding, cells: torch.Tensor, eq: torch.Tensor, question: torch.Tensor,
                 candidates: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The same on every image of the batch: cells [I, N, D], eq [B, I, N] -> [B, K, I]. A count that is
        right on its own image and wrong on the others teaches what the question counts (digits, not letters)."""
        count = self.counted(eq, self.center(cells).squeeze(-1))  # [B, I]
        return self.compare(count.unsqueeze(1), embed, question, candidates.unsqueeze(-2))  # [B, K, I]

    def counted(self, eq: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """eq [.., N], center [.., N] (broadcast) -> [..] the peaks' sigmoid mass."""
        h, w = self.grid_hw
        logit = (self.alpha * eq + center + self.bias).float()  # [.., N]
        grid = logit.reshape(-1, 1, h, w)
        peak = (grid >= F.max_pool2d(grid, 3, stride=1, padding=1)).view(logit.shape)  # local maxima
        return (torch.sigmoid(logit) * peak).sum(-1)

    def compare(self, count: torch.Tensor, embed: nn.Embedding, question: torch.Tensor,
                candidates: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """-pi(q) (count - nu)^2 for counts [B, 1, ..] and each candidate's number (candidates [B, K, .., La])."""
        number = self.number(mean_embedding(embed, candidates)).squeeze(-1)  # [B, K, ..]
        asks = F.softplus(self.asks(mean_embedding(embed, question)))  # [B, 1]
        return -asks.view(-1, *[1] * (number.dim() - 1)) * (count - number) ** 2


class WordEvidence(nn.Module):
    """The evidence part (module docstring): per-word keys and rows, the MIL score, the matching logits."""

    def __init__(self, embed_dim: int, d: int, count: nn.Module) -> None:
        super().__init__()
        self.key = nn.Linear(d, d)  # W_k
        self.word = nn.Linear(embed_dim, d, bias=False)  # W_w
        self.names = nn.Linear(embed_dim, 1)  # g: how much a word names something one can see
        self.scale = nn.Parameter(torch.tensor(1.0))  # s
        self.count = count  # CountEvidence, or Zero
        self.d = d

    def rows(self, embed: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        """[B, R] token ids -> [B, R, D] r_t (zero rows for padding)."""
        emb = embed(ids)  # [B, R, E]
        weight = torch.sigmoid(self.names(emb)) * (ids != 0).unsqueeze(-1)  # [B, R, 1]
        return self.word(emb) * weight / math.sqrt(self.d)

    def forward(self, embed: nn.Embedding, cells: torch.Tensor, question: torch.Tensor, candidates: torch.Tensor,
                image_index: torch.Tensor | None, matching: bool = False,
                boxes: torch.Tensor | None = None) -> Evidence:  # fmt: skip
        """cells [I, N, D], question [B, Lq] (the words the variant reads: [B, 0] for none), candidates [B, K, La];
        ``matching``: also each candidate's evidence on every image of the batch (the matching loss's logits).
        ``boxes``: pointing's (``BoxEvidence``); text candidates have none."""
        b, k, la = candidates.shape
        lq = question.shape[1]
        rows = self.rows(embed, torch.cat([question, candidates.reshape(b, k * la)], 1))  # [B, Lq + K*La, D]
        keys = torch.tanh(self.key(cells))  # [I, N, D]
        seen = per_image_bmm(keys, rows, image_index)  # [B, N, Lq + K*La]: every word on every cell
        eq = seen[..., :lq].sum(-1)  # [B, N]
        ea = seen[..., lq:].reshape(b, -1, k, la).sum(-1).transpose(1, 2)  # [B, K, N]
        both = eq.unsqueeze(1) + ea  # [B, K, N]
        score = self.pooled(both) + self.count(embed, cells, eq, question, candidates, image_index)  # [B, K]
        matched = self.matching(embed, cells, keys, rows, question, candidates) if matching else None
        return Evidence(score, eq.unsqueeze(-1), both.unsqueeze(-1), matched)

    def pooled(self, logits: torch.Tensor) -> torch.Tensor:
        """[.., N] -> [..] s (logsumexp over the cells - log N): 0 for evidence spread evenly."""
        return self.scale * (torch.logsumexp(logits.float(), dim=-1) - math.log(logits.shape[-1]))

    def matching(self, embed: nn.Embedding, cells: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor,
                 question: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """keys [I, N, D], rows [B, Lq + K*La, D] -> [B, K, I]: the evidence for question and candidate k on every
        image i of the batch, the best cell's and the count's."""
        (i, n, _), (b, k, _), lq = keys.shape, candidates.shape, question.shape[1]
        seen = torch.einsum("ind,brd->binr", keys, rows)  # [B, I, N, R]
        eq = seen[..., :lq].sum(-1)  # [B, I, N]
        ea = seen[..., lq:].reshape(b, i, n, k, -1).sum(-1)  # [B, I, N, K]
        pooled = self.pooled((eq.unsqueeze(-1) + ea).permute(0, 3, 1, 2))  # [B, K, I]
        return pooled + self.count.matching(embed, cells, eq, question, candidates)


def box_shares(boxes: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """[B, K, 4] boxes (x0, y0, x1, y1 in [0, 1]) -> [B, K, H*W]: the share of each grid cell that lies inside
    each box (a small box still covers parts of the cells it touches, even when it holds no cell's centre)."""
    h, w = grid_hw
    x0, y0, x1, y1 = (t.unsqueeze(-1) for t in boxes.float().unbind(-1))  # [B, K, 1] each
    edge_x, edge_y = (torch.arange(n + 1, device=boxes.device, dtype=torch.float32) / n for n in (w, h))
    over_x = (torch.minimum(x1, edge_x[1:]) - torch.maximum(x0, edge_x[:-1])).clamp(min=0) * w  # [B, K, W]
    over_y = (torch.minimum(y1, edge_y[1:]) - torch.maximum(y0, edge_y[:-1])).clamp(min=0) * h  # [B, K, H]
    return (over_y.unsqueeze(-1) * over_x.unsqueeze(-2)).flatten(2)  # [B, K, H*W]


class BoxEvidence(WordEvidence):
    """Pointing: where the question's words are seen, pooled inside each candidate box.

        ev_k = s(q) log( sum_n share_kn exp(eq_n) / sum_n share_kn )    between the mean and the max of eq in box k

    Why: "Which character is a 7?" is answered by the box in which "7" is seen, and reading it through the box's
    pooled content and the scorer is the slow path (a glyph's identity learned only from which box won). As for
    telling, the matching loss makes where each word is seen first-order: the true box's evidence on its own
    image against the same box on the batch's other images. ``s(q)`` in [0, s] says how much the question is
    about what is inside the answer box ("left of the red star" is about what is next to it).

    For those relations, ``eq`` is also added to the logits of the glimpse that finds what the question names
    (``RelationsAndPlace``): "the red star" is found where its words are seen, and where it lies from each box
    decides "left of". The candidates' own glimpses are left to the box offsets and the grounding loss.
    """

    FLOOR = 1e-3  # a cell outside the box counts as this share (log: -6.9), so the pooling stays finite

    def __init__(self, embed_dim: int, d: int, grid_hw: tuple[int, int]) -> None:
        super().__init__(embed_dim, d, Zero())
        self.grid_hw = grid_hw
        self.asks = nn.Linear(embed_dim, 1)  # s(q), before the sigmoid
        nn.init.constant_(self.asks.bias, 2.0)  # start near s: every family may be about the box's content

    def forward(self, embed: nn.Embedding, cells: torch.Tensor, question: torch.Tensor, candidates: torch.Tensor,
                image_index: torch.Tensor | None, matching: bool = False,
                boxes: torch.Tensor | None = None) -> Evidence:  # fmt: skip
        """cells [I, N, D], question [B, Lq], boxes [B, K, 4] (``candidates`` holds one [UNK] each, not read)."""
        if boxes is None:
            raise ValueError("box evidence needs the candidates' boxes [B, K, 4]")
        rows = self.rows(embed, question)  # [B, Lq, D]
        keys = torch.tanh(self.key(cells))  # [I, N, D]
        shares = box_shares(boxes, self.grid_hw).clamp(min=self.FLOOR)  # [B, K, N]
        norm = torch.log(shares.sum(-1))  # [B, K]
        asks = self.scale * torch.sigmoid(self.asks(mean_embedding(embed, question)))  # [B, 1]
        eq = per_image_bmm(keys, rows, image_index).sum(-1)  # [B, N]
        score = asks * (self.in_boxes(eq.unsqueeze(1), shares) - norm)  # [B, K]
        matched = None
        if matching:  # the question's evidence on every image i, inside each candidate's box: [B, K, I]
            eq_all = torch.einsum("ind,brd->bin", keys, rows)  # [B, I, N]
            inside = self.in_boxes(eq_all.unsqueeze(1), shares.unsqueeze(2))  # [B, K, I]
            matched = asks.unsqueeze(-1) * (inside - norm.unsqueeze(-1))
        return Evidence(score, eq.unsqueeze(-1), 0.0, matched)

    @staticmethod
    def in_boxes(eq: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
        """eq [.., N], shares [.., N] (broadcast) -> [..] logsumexp_n (eq_n + log share_n)."""
        return torch.logsumexp(eq.float() + torch.log(shares), dim=-1)


class NoEvidence(nn.Module):
    """No word evidence (the decoder head, the variants that do not attend, or ``model.evidence: false``):
    nothing added anywhere."""

    def forward(self, embed: nn.Embedding, cells: object, question: torch.Tensor, candidates: torch.Tensor,
                image_index: torch.Tensor | None, matching: bool = False,
                boxes: torch.Tensor | None = None) -> Evidence:  # fmt: skip
        return NONE


class Zero(nn.Module):
    """An empty score term (``model.count: false``)."""

    def forward(self, *_: object) -> float:
        return 0.0

    def matching(self, *_: object) -> float:
        return 0.0
