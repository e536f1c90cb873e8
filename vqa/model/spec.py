"""What a network is: the settings that rebuild it from a checkpoint, and the rules between them.

``meta.json`` beside every checkpoint holds ``ModelSpec.to_dict()``; ``ModelSpec.from_dict`` reads it back and
refuses what this code cannot rebuild (another parameter layout, unknown fields) with a message that says what to
do, instead of a wall of "Missing key(s) in state_dict".
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from ..common.errors import ConfigError

# The parameter layout of ``VQAModel``: bumped whenever parameter names or shapes move, so that a checkpoint of
# another layout is refused by name instead of failing halfway through ``load_state_dict``.
# 1 (no ``layout`` field): the single-module ``vqa/model.py``. 2: the model made of parts (``vqa/model/``).
LAYOUT = 2
CONTEXT_GROUPS = 8  # model.cell_context is a grouped conv in this many groups (``grid.py``)
RETRAIN = 'retrain with `make train ARGS="train.resume=never"` (plus the CONFIG and ARGS the run was trained with)'


def check_cell_context(k: int, d: int) -> None:
    """``model.cell_context`` is a k x k window centred on each cell, a conv in CONTEXT_GROUPS groups over the
    attention_dim channels: refused before any work when it cannot be built."""
    if k % 2 == 0 and k:
        raise ConfigError(f"model.cell_context must be 0 (off) or odd (a k x k window centred on each cell), got {k}")
    if k and d % CONTEXT_GROUPS:
        g = CONTEXT_GROUPS
        raise ConfigError(f"model.cell_context={k} needs model.attention_dim divisible by {g} (a conv in {g} groups), "
                          f"got {d}: change attention_dim or set model.cell_context=0")  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network (saved beside every checkpoint)."""

    vocab_size: int
    grid: tuple[int, int, int]  # (C, H, W) of the features
    variant: str  # attention | no_attention | image_only | blind | answer_only
    rnn: str  # lstm | gru
    bidirectional: bool
    embed_dim: int
    hidden_dim: int
    answer_encoder: str  # rnn | mean
    glimpses: int
    attention_dim: int
    dropout: float
    count: bool  # the counting path
    task: str  # the task whose candidates the model reads (``vqa.tasks``: it chooses the candidate parts)
    attention: str  # additive: tanh(W_v v + W_s s) | bilinear: tanh(W_v v) * tanh(W_s s) (MLB)
    question_glimpses: int  # glimpses driven by the question alone, shared by the candidates
    cell_context: int  # > 0: each projected cell also sees its k x k neighbourhood (a grouped conv, residual)
    head: str = "score"  # score (the scorer MLP) | decoder (the attention LSTM); meta written before heads: score
    evidence: bool = False  # word evidence (``evidence.py``) where the task's candidates are words; meta before it: off
    box_evidence: bool = False  # the question's evidence inside each candidate box (pointing); meta before it: off
    layout: int = LAYOUT  # the parameter layout the weights were written in (see ``LAYOUT``)

    @classmethod
    def from_config(cls, cfg: Any, vocab_size: int, grid: tuple[int, int, int], task: str, attention: str,
                    question_glimpses: int) -> ModelSpec:  # fmt: skip
        """``cfg.model`` for ``task``, with what the task resolves (``Task.model_spec``): the attention form of
        ``auto`` and the question glimpses it uses."""
        m = cfg.model
        check_cell_context(m.cell_context, m.attention_dim)
        return cls(vocab_size, tuple(grid), m.variant, m.rnn, m.bidirectional, m.embed_dim, m.hidden_dim,
                   m.answer_encoder, m.glimpses, m.attention_dim, m.dropout, m.count, task, attention,
                   question_glimpses, m.cell_context, m.head, m.evidence, m.evidence)  # fmt: skip

    @classmethod
    def from_dict(cls, d: Any) -> ModelSpec:
        """A saved spec back, or ``ConfigError`` saying why these weights cannot be rebuilt here."""
        if not isinstance(d, dict):
            raise ConfigError(f"'spec' does not describe a model: a mapping was expected, got {type(d).__name__}")
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in d]
        if missing:
            raise ConfigError(f"'spec' does not describe a model: no {', '.join(missing)}")
        if "layout" not in d:
            raise ConfigError("this checkpoint was written by an older model layout (1, the single-module model; "
                              f"this code reads layout {LAYOUT})", [RETRAIN])  # fmt: skip
        if d["layout"] != LAYOUT:
            raise ConfigError(f"this checkpoint was written in model layout {d['layout']!r}; this code reads layout "
                              f"{LAYOUT}", [RETRAIN + ", or use the code that wrote it"])  # fmt: skip
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"'spec' has fields this code does not know: {', '.join(unknown)}", [RETRAIN])
        try:
            return cls(**{**d, "grid": tuple(d["grid"])})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"'spec' does not describe a model ({type(e).__name__}: {e})") from None

    @property
    def attends(self) -> bool:
        return self.variant in ("attention", "image_only")

    @property
    def sees_image(self) -> bool:
        return self.variant not in ("blind", "answer_only")

    @property
    def reads_question(self) -> bool:
        return self.variant not in ("image_only", "answer_only")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
