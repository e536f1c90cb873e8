"""The seeds' decoder head (``model.head=decoder``): an attention LSTM that reads an answer word by word.

The lecture decks end on one model (Show, Attend and Tell; the official Visual7W model): a recurrent decoder that
looks at the grid again at every word. For an answer y_1..y_T (y_T+1 = the end, token 0):

    s_0      = tanh(W_0 [q ; c_0])                     the question and what its glimpses saw (counted)  [B, H] x 2
    e_t,n    = w . tanh(W_v v_n + W_s h_t-1)           the seeds' f_att MLP over the cells             [S, N]
    a_t      = softmax_n(e_t),  c_t = sum_n a_t,n v_n                                                   [S, D]
    s_t      = LSTM([E y_t-1 ; c_t], s_t-1)            y_0 = a learned start vector
    p(y_t)   = softmax(W_o [h_t ; c_t])                                                                [S, V]

A candidate's score is its mean log-likelihood over its words and the end (``model.head`` notes in docs/model.md:
mean against sum); multiple choice takes the highest, and open-ended answers are the beam search's best.
Attention is one map per answer word and the end, ``[B, K, T, H, W]``; a shorter answer's steps past its end
repeat the mean of its own maps, so a mean over T is the mean over its words whatever the padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .grid import GridCells
from .net import build_look
from .parts import TEXT
from .spec import ModelSpec
from .text import QuestionEncoder

END, UNKNOWN = 0, 1  # token ids: [PAD] doubles as the end of an answer; [UNK] is never generated


class AttentionLSTM(nn.Module):
    """The decoder's weights and its one step (equations in the module docstring)."""

    def __init__(self, spec: ModelSpec, q_dim: int, seen_dim: int) -> None:
        super().__init__()
        d, h, e = spec.attention_dim, spec.hidden_dim, spec.embed_dim
        self.start = nn.Parameter(torch.zeros(e))  # y_0: no word read yet
        self.init = nn.Linear(q_dim + seen_dim, 2 * h)  # s_0 = (h_0, c_0)
        self.att_v = nn.Linear(d, d, bias=False)
        self.att_s = nn.Linear(h, d)
        self.att_w = nn.Linear(d, 1)
        self.cell = nn.LSTMCell(e + d, h)
        self.drop = nn.Dropout(spec.dropout)
        self.out = nn.Linear(h + d, spec.vocab_size)

    def begin(self, q: torch.Tensor, seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = torch.tanh(self.init(torch.cat([q, seen], dim=-1))).chunk(2, dim=-1)  # [B, H] x 2
        return h.contiguous(), c.contiguous()

    def step(self, y: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], cells: torch.Tensor,
             proj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
        """y [S, E] the previous word, state (h, c) [S, H], cells and their W_v projection [S, N, D] ->
        next-word logits [S, V], attention [S, N], the new state."""
        e = self.att_w(torch.tanh(proj + self.att_s(state[0]).unsqueeze(1))).squeeze(-1)  # [S, N]
        a = F.softmax(e.float(), dim=1)  # [S, N]
        c = torch.bmm(a.to(cells.dtype).unsqueeze(1), cells).squeeze(1)  # [S, D]
        state = self.cell(torch.cat([y, c], dim=-1), state)  # (h, c) [S, H]
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
        seen, _, gates = self.look(cells, q, one, one[..., :0], None, image_index)  # [B, 1, C], gates [B, 1, N, G]
        return self.decoder.begin(q, seen[:, 0]), cells, gates

    def per_sequence(self, cells: torch.Tensor, image_index: torch.Tensor | None, b: int, k: int) -> tuple:
        """The cells (and their W_v projection) of every sequence's image: [B*K, N, D] each."""
        idx = image_index if image_index is not None else torch.arange(b, device=cells.device)
        idx = idx.repeat_interleave(k)  # [B*K]
        return cells[idx], self.decoder.att_v(cells)[idx]

    def forward(
        self, features: torch.Tensor, question: torch.Tensor, question_len: torch.Tensor, candidates: torch.Tensor,
        candidate_len: torch.Tensor, image_index: torch.Tensor | None = None, with_gates: bool = False,
        boxes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """As ``VQAModel.forward``: -> scores [B, K] (mean log-likelihood of each candidate, teacher-forced),
        attention [B, K, T, H, W] (one map per word and the end), and with ``with_gates`` the gate logits."""
        b, k, la = candidates.shape
        (h, c), cells, gates = self.start(features, question, question_len, image_index)
        cells_s, proj_s = self.per_sequence(cells, image_index, b, k)  # [S, N, D] x 2, S = B*K
        state = (h.repeat_interleave(k, 0), c.repeat_interleave(k, 0))  # [S, H] x 2
        tokens = candidates.reshape(b * k, la)  # [S, La]
        steps = candidate_len.reshape(-1).to(tokens.device) + 1  # [S]: words + end
        t_max = int(steps.max())
        targets = F.pad(tokens, (0, 1))[:, :t_max]  # [S, T]: the words, then END (0) at each answer's end
        inputs = torch.cat([self.decoder.start.expand(b * k, 1, -1), self.embed(tokens)], dim=1)  # [S, La+1, E]
        logp, maps = [], []
        for t in range(t_max):
            logits, a, state = self.decoder.step(inputs[:, t], state, cells_s, proj_s)
            logp.append(F.log_softmax(logits.float(), dim=-1).gather(1, targets[:, t : t + 1]).squeeze(1))  # [S]
            maps.append(a)
        real = torch.arange(t_max, device=tokens.device)[None, :] < steps[:, None]  # [S, T]
        scores = (torch.stack(logp, 1) * real).sum(1) / steps  # [S]: mean log-likelihood per step
        att = mean_past_end(torch.stack(maps, 1), steps)  # [S, T, N]
        _, hh, ww = self.spec.grid
        attention = att.view(b, k, t_max, hh, ww)  # [B, K, T, H, W]
        scores = scores.view(b, k)
        return (scores, attention, gates) if with_gates else (scores, attention)

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
        cells_s, proj_s = self.per_sequence(cells, image_index, b, k)  # [B*k, N, D]
        state = (h.repeat_interleave(k, 0), c.repeat_interleave(k, 0))  # [B*k, H]
        total = torch.full((b, k), float("-inf"), device=h.device)
        total[:, 0] = 0.0  # one live beam at the start: the others would repeat it
        words = torch.zeros(b, k, 0, dtype=torch.long, device=h.device)
        ended = torch.zeros(b, k, dtype=torch.bool, device=h.device)
        y = self.decoder.start.expand(b * k, -1)
        for t in range(max_words + 1):
            logits, _, state = self.decoder.step(y, state, cells_s, proj_s)
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
            y = self.embed(word.view(-1))
            if bool(ended.all()):
                break
        steps = (words != END).sum(2) + 1  # [B, k]: words + end
        mean = total / steps
        order = mean.argsort(dim=1, descending=True, stable=True)
        return words.gather(1, order[..., None].expand_as(words)), mean.gather(1, order)
