"""The question and the text candidates, as vectors.

The embedding table is the model's (``VQAModel.embed``), shared by the question and the answers and passed to
these parts at each call: a table held by two parts would be saved twice, and safetensors refuses shared tensors.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .spec import ModelSpec


class TextEncoder(nn.Module):
    """Embedded token ids -> one vector per sequence: the RNN's final state at each sequence's last real token.

    Padding never changes it: a one-way RNN reads the padding only *after* that state, and a bidirectional one
    gets packed sequences. The one-way RNN runs on the padded batch when padding is at most half of it: PyTorch
    then projects every step's input in one GEMM, where packed sequences take one per step (on a CPU, packed
    cost 1.6-1.8x the time per real token: Visual7W-size questions and answers, LSTM 300 -> 512).
    """

    def __init__(self, kind: str, embed_dim: int, hidden_dim: int, bidirectional: bool) -> None:
        super().__init__()
        rnn = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = rnn(embed_dim, hidden_dim, batch_first=True, bidirectional=bidirectional)
        self.out_dim = hidden_dim * (2 if bidirectional else 1)

    def forward(self, emb: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # emb [S, L, E], lengths [S] (>= 1)
        # (not under CPU autocast: oneDNN has no bf16 RNN primitive on CPUs without AVX512-BF16)
        cpu_autocast = emb.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        if not self.rnn.bidirectional and not cpu_autocast and emb.shape[0] * emb.shape[1] <= 2 * int(lengths.sum()):
            out, _ = self.rnn(emb)  # [S, L, H]: the state after every step
            return out[torch.arange(emb.shape[0], device=emb.device), lengths.to(emb.device) - 1]  # [S, H]
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # [layers * dirs, S, H]
        return torch.cat([h[-2], h[-1]], dim=-1) if self.rnn.bidirectional else h[-1]  # [S, out_dim]


def _text_encoder(spec: ModelSpec) -> TextEncoder:
    return TextEncoder(spec.rnn, spec.embed_dim, spec.hidden_dim, spec.bidirectional)


class QuestionEncoder(nn.Module):
    """q = RNN(embed(question)): what the question asks, one vector per question."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.encoder = _text_encoder(spec)
        self.drop = nn.Dropout(spec.dropout)
        self.out_dim = self.encoder.out_dim

    def forward(self, embed: nn.Embedding, question: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.drop(self.encoder(embed(question), lengths))  # [B, Lq] -> [B, Dq]

    @staticmethod
    def words(question: torch.Tensor) -> torch.Tensor:
        """The question's token ids as the word evidence reads them: all of them."""
        return question  # [B, Lq]


class NoQuestion(nn.Module):
    """image_only and answer_only never read the question: no encoder at all (an unused one would upset DDP).
    q is then an empty [B, 0], so the parts downstream take [q; a] the same way in every variant."""

    out_dim = 0

    def forward(self, embed: nn.Embedding, question: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return question.new_zeros(question.shape[0], 0, dtype=torch.float32)  # [B, 0]

    @staticmethod
    def words(question: torch.Tensor) -> torch.Tensor:
        """No word of the question reaches the word evidence either."""
        return question[:, :0]  # [B, 0]


class AnswerEncoder(nn.Module):
    """Telling: a_k = RNN(embed(candidate_k)), one vector per candidate answer."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.encoder = _text_encoder(spec)
        self.drop = nn.Dropout(spec.dropout)
        self.out_dim = self.encoder.out_dim

    def forward(self, embed: nn.Embedding, candidates: torch.Tensor, lengths: torch.Tensor,
                *_: object) -> torch.Tensor:  # fmt: skip
        b, k, la = candidates.shape  # [B, K, La], lengths [B, K]
        emb = embed(candidates.view(b * k, la))  # [B*K, La, E]
        return self.drop(self.encoder(emb, lengths.view(-1)).view(b, k, -1))  # [B, K, Da]


class MeanAnswerEncoder(nn.Module):
    """Telling, ``answer_encoder=mean``: a_k = the mean of its word vectors (padding excluded)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.drop = nn.Dropout(spec.dropout)
        self.out_dim = spec.embed_dim

    def forward(self, embed: nn.Embedding, candidates: torch.Tensor, lengths: torch.Tensor,
                *_: object) -> torch.Tensor:  # fmt: skip
        b, k, la = candidates.shape  # [B, K, La]
        emb = embed(candidates.view(b * k, la))  # [B*K, La, E]
        mask = (candidates.view(b * k, la) != 0).unsqueeze(-1).to(emb.dtype)  # [B*K, La, 1]
        return self.drop(((emb * mask).sum(1) / mask.sum(1).clamp(min=1)).view(b, k, -1))  # [B, K, E]
