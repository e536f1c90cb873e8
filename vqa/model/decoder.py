"""The seeds' decoder head (``model.head=decoder``): an attention LSTM that reads an answer word by word.

The lecture decks end on one model (Show, Attend and Tell; the official Visual7W model): a recurrent decoder that
looks at the grid again at every word. For an answer y_1..y_T (y_T+1 = the end, token 0):

    s_0      = tanh(W_0 [q ; c_0])                     the question and what its glimpses saw (counted)  [B, H] x 2
    e_t,n    = w . (tanh(W_v v_n) * tanh(W_s h_t-1))   the seeds' f_att over the cells, factorised     [S, N]
               (``model.attention=additive``: w . tanh(W_v v_n + W_s h_t-1), as the seeds write it)
    a_t      = softmax_n(e_t),  c_t = sum_n a_t,n v_n                                                   [S, D]
    s_t      = LSTM([E y_t-1 ; c_t], s_t-1)            y_0 = a learned start vector
    p(y_t)   = softmax(W_o [h_t ; c_t])                                                                [S, V]

A candidate's score is its mean log-likelihood over its words and the end (``model.head`` notes in docs/model.md:
mean against sum); multiple choice takes the highest, and open-ended answers are the beam search's best.
Attention is one map per answer word and the end, ``[B, K, T, H, W]``; a shorter answer's steps past its end
repeat the mean of its own maps, so a mean over T is the mean over its words whatever the padding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import factorised_logits, per_image_bmm
from .evidence import NONE
from .grid import GridCells
from .net import Aux, build_look
from .parts import TEXT
from .spec import ModelSpec
from .text import QuestionEncoder

END, UNKNOWN = 0, 1  # token ids: [PAD] doubles as the end of an answer; [UNK] is never generated


class BilinearAttend(nn.Module):
    """e_t,n = w . (tanh(W_v v_n) * tanh(W_s h_t-1)): the f_att MLP in its factorised (MLB) form, the telling
    default (``model.attention``). Why: written as w . tanh(W_v v_n + W_s h), every step of every sequence builds
    a [B*K, N, D] tensor (3.5x the score head's training step on a 2-core CPU); factorised, each image's cells
    are multiplied once per step by all its sequences' rows (``per_image_bmm``), as the score head's glimpses are."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.att_v, self.att_s, self.att_w = nn.Linear(d, d, bias=False), nn.Linear(h, d), nn.Linear(d, 1)

    def prepare(self, cells: torch.Tensor, image_index: torch.Tensor | None, k: int) -> torch.Tensor:
        return torch.tanh(self.att_v(cells))  # [I, N, D], once per forward

    def forward(self, ready: torch.Tensor, cells: torch.Tensor, h: torch.Tensor,
                image_index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """h [B, K, H] -> attention [B, K, N], context [B, K, D]."""
        logits = factorised_logits(ready, torch.tanh(self.att_s(h)), self.att_w.weight, self.att_w.bias, image_index)
        a = F.softmax(logits.squeeze(-1).float(), dim=1)  # [B, N, K]
        c = per_image_bmm(cells.transpose(1, 2), a.transpose(1, 2).to(cells.dtype), image_index)  # [B, D, K]
        return a.transpose(1, 2), c.transpose(1, 2)


class AdditiveAttend(BilinearAttend):
    """e_t,n = w . tanh(W_v v_n + W_s h_t-1): the seeds' f_att as written (``model.attention=additive``)."""

    def prepare(self, cells: torch.Tensor, image_index: torch.Tensor | None, k: int) -> tuple:
        idx = image_index if image_index is not None else torch.arange(cells.shape[0], device=cells.device)
        idx = idx.repeat_interleave(k)  # [B*K]: each sequence's image
        return cells[idx], self.att_v(cells)[idx]  # [B*K, N, D] x 2

    def forward(self, ready: tuple, cells: torch.Tensor, h: torch.Tensor,
                image_index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        b, k, _ = h.shape
        cells_s, proj_s = ready
        e = self.att_w(torch.tanh(proj_s + self.att_s(h).view(b * k, 1, -1))).squeeze(-1)  # [B*K, N]
        a = F.softmax(e.float(), dim=1)  # [B*K, N]
        c = torch.bmm(a.to(cells_s.dtype).unsqueeze(1), cells_s).squeeze(1)  # [B*K, D]
        return a.view(b, k, -1), c.view(b, k, -1)


class AttentionLSTM(nn.Module):
    """The decoder's weights and its one step (equations in the module docstring)."""

    def __init__(self, spec: ModelSpec, q_dim: int, seen_dim: int) -> None:
        super().__init__()
        d, h, e = spec.attention_dim, spec.hidden_dim, spec.embed_dim
        self.start = nn.Parameter(torch.zeros(e))  # y_0: no word read yet
        self.init = nn.Linear(q_dim + seen_dim, 2 * h)  # s_0 = (h_0, c_0)
        self.attend = (BilinearAttend if spec.attention == "bilinear" else AdditiveAttend)(d, h)
        self.cell = nn.LSTMCell(e + d, h)
        self.drop = nn.Dropout(spec.dropout)
        self.out = nn.Linear(h + d, spec.vocab_size)

    def begin(self, q: torch.Tensor, seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = torch.tanh(self.init(torch.cat([q, seen], dim=-1))).chunk(2, dim=-1)  # [B, H] x 2
        return h.contiguous(), c.contiguous()

    def step(self, y: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], ready: Any, cells: torch.Tensor,
             image_index: torch.Tensor | None) -> tuple:  # fmt: skip
        """y [B, K, E] the previous words, state (h, c) [B*K, H], the attend part's ``ready`` cells ->
        next-word logits [B*K, V], attention [B, K, N], the new state."""
        b, k, _ = y.shape
        a, c = self.attend(ready, cells, state[0].view(b, k, -1), image_index)  # [B, K, N], [B, K, D]
        c = c.reshape(b * k, -1)  # [B*K, D]
        state = self.cell(torch.cat([y.reshape(b * k, -1), c], dim=-1), state)  # (h, c) [B*K, H]
        return self.out(self.drop(torch.cat([state[0], c], dim=-1))), a, state


def mean_past_end(att: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """att [S, T, N], steps [S] real steps (words + end) -> the steps past each end set to the mean of its own."""
    real = torch.arange(att.shape[1], device=att.device)[None, :] < steps[:, None]  # [S, T]
    mean = (att * real.unsqueeze(-1)).sum(1) / steps[:, None]  # [S, N]
    return torch.where(real.unsqueeze(-1), att, mean.unsqueeze(1))  # [S, T, N]


class DecoderNet(nn.Module):
    """Question encoder, grid, the question's look (the decoder's start) and the attention LSTM; the forward has
    ``VQAModel``'s signature, so training, evaluation and inspection take either head."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(spec.vocab_size, spec.embed_dim, padding_idx=0)
        self.question = QuestionEncoder(spec)
        self.grid = GridCells(spec)
        self.look = build_look(spec, self.question.out_dim, 0, TEXT)  # [q] alone drives it: one "candidate"
        self.decoder = AttentionLSTM(spec, self.question.out_dim, self.look.out_dim)

    def start(self, features: torch.Tensor, question: torch.Tensor, question_len: torch.Tensor,
              image_index: torch.Tensor | None) -> tuple:  # fmt: skip
        """The state before the first word [B, H] x 2, the cells [I, N, D] and the counting gates."""
        q = self.question(self.embed, question, question_len)  # [B, Dq]
        cells = self.grid(features)  # [I, N, D]
        one = q.unsqueeze(1)  # [B, 1, Dq]
        seen, _, gates = self.look(cells, q, one, one[..., :0], None, image_index, NONE)  # [B, 1, C], [B, 1, N, G]
        return self.decoder.begin(q, seen[:, 0]), cells, gates

    def forward(
        self, features: torch.Tensor, question: torch.Tensor, question_len: torch.Tensor, candidates: torch.Tensor,
        candidate_len: torch.Tensor, image_index: torch.Tensor | None = None, with_aux: bool = False,
        boxes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """As ``VQAModel.forward``: -> scores [B, K] (mean log-likelihood of each candidate, teacher-forced),
        attention [B, K, T, H, W] (one map per word and the end), and with ``with_aux`` the gate logits (``Aux``)."""
        b, k, la = candidates.shape
        (h, c), cells, gates = self.start(features, question, question_len, image_index)
        ready = self.decoder.attend.prepare(cells, image_index, k)
        state = (h.repeat_interleave(k, 0), c.repeat_interleave(k, 0))  # [S, H] x 2, S = B*K
        tokens = candidates.reshape(b * k, la)  # [S, La]
        steps = candidate_len.reshape(-1).to(tokens.device) + 1  # [S]: words + end
        t_max = int(steps.max())
        targets = F.pad(tokens, (0, 1))[:, :t_max]  # [S, T]: the words, then END (0) at each answer's end
        inputs = torch.cat([self.decoder.start.expand(b * k, 1, -1), self.embed(tokens)], dim=1)  # [S, La+1, E]
        inputs = inputs.view(b, k, la + 1, -1)  # [B, K, La+1, E]
        logp, maps = [], []
        for t in range(t_max):
            logits, a, state = self.decoder.step(inputs[:, :, t], state, ready, cells, image_index)
            logp.append(F.log_softmax(logits.float(), dim=-1).gather(1, targets[:, t : t + 1]).squeeze(1))  # [S]
            maps.append(a.reshape(b * k, -1))  # [S, N]
        real = torch.arange(t_max, device=tokens.device)[None, :] < steps[:, None]  # [S, T]
        scores = (torch.stack(logp, 1) * real).sum(1) / steps  # [S]: mean log-likelihood per step
        att = mean_past_end(torch.stack(maps, 1), steps)  # [S, T, N]
        _, hh, ww = self.spec.grid
        attention = att.view(b, k, t_max, hh, ww)  # [B, K, T, H, W]
        scores = scores.view(b, k)
        return (scores, attention, Aux(gates, None)) if with_aux else (scores, attention)

    @staticmethod
    def answer_loss(scores: torch.Tensor, label: torch.Tensor, ranking: float) -> torch.Tensor:
        """The true answer's NLL per word (teacher forcing) + ``ranking`` x cross-entropy over the candidates."""
        nll = -scores[torch.arange(len(label), device=scores.device), label].mean()
        return nll + ranking * F.cross_entropy(scores, label) if ranking else nll


    @torch.no_grad()
    def generate(self, features: torch.Tensor, question: torch.Tensor, question_len: torch.Tensor,
                 image_index: torch.Tensor | None = None, k: int = 5, max_words: int = 8,
                 ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Beam search, ``k`` beams: -> answers [B, k, L] (token ids, 0 after the end) and their mean log-likelihood
        per step [B, k], best first. Beams are kept by total log-likelihood and ranked at the end by the mean, the
        multiple-choice score; [UNK] and an empty answer are never generated, ``max_words`` ends every answer."""
        (h, c), cells, _ = self.start(features, question, question_len, image_index)
        b = h.shape[0]
        ready = self.decoder.attend.prepare(cells, image_index, k)
        state = (h.repeat_interleave(k, 0), c.repeat_interleave(k, 0))  # [B*k, H]
        total = torch.full((b, k), float("-inf"), device=h.device)
        total[:, 0] = 0.0  # one live beam at the start: the others would repeat it
        words = torch.zeros(b, k, 0, dtype=torch.long, device=h.device)
        ended = torch.zeros(b, k, dtype=torch.bool, device=h.device)
        y = self.decoder.start.expand(b, k, -1)  # [B, k, E]
        for t in range(max_words + 1):
            logits, _, state = self.decoder.step(y, state, ready, cells, image_index)
            logp = F.log_softmax(logits.float(), dim=-1).view(b, k, -1)  # [B, k, V]
            logp[..., [UNKNOWN, END] if t == 0 else [UNKNOWN]] = float("-inf")
            if t == max_words:
                logp[..., 1:] = float("-inf")  # only the end is left
            logp[ended] = F.pad(torch.zeros(1, device=h.device), (0, logp.shape[-1] - 1), value=float("-inf"))
            best, pick = (total.unsqueeze(-1) + logp).view(b, -1).topk(k, dim=1)  # [B, k]
            beam, word = pick // logp.shape[-1], pick % logp.shape[-1]  # [B, k]
            rows = (beam + torch.arange(b, device=h.device)[:, None] * k).view(-1)  # [B*k]
            state = (state[0][rows], state[1][rows])
            words = torch.cat([words.gather(1, beam[..., None].expand(-1, -1, words.shape[2])), word[..., None]], 2)
            ended, total = ended.gather(1, beam) | (word == END), best
            y = self.embed(word)  # [B, k, E]
            if bool(ended.all()):
                break
        steps = (words != END).sum(2) + 1  # [B, k]: words + end
        mean = total / steps
        order = mean.argsort(dim=1, descending=True, stable=True)
        return words.gather(1, order[..., None].expand_as(words)), mean.gather(1, order)
