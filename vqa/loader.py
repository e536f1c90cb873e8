"""Examples for training and evaluation: grid features (memory-mapped) + tokenised QA, with shuffled candidates.

The true answer is candidates[0] in the file. If the model always saw it first, position alone would answer every
question, so every example's candidate order is a random permutation drawn from ``(seed, epoch, qa_id)``: a new
order each training epoch, one fixed order for evaluation. Being a pure function of those numbers (not of a
worker's RNG state), it is the same on 1 or N processes, with or without workers, and after a resume.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset as ArrowTable
from torch.utils.data import Dataset, Sampler

from .features import FeatureReader

EVAL_EPOCH = 1_000_003  # the candidate order used for evaluation (fixed by the seed)


def candidate_order(seed: int, epoch: int, qa_id: int, k: int = 4) -> np.ndarray:
    return np.random.default_rng([seed, epoch, qa_id]).permutation(k)


def split_rows(table: ArrowTable, split: str, reader: FeatureReader | None = None) -> tuple[ArrowTable, int]:
    """Rows of one split whose image has features; returns (rows, number dropped for missing features)."""
    splits, images = table["split"], table["image_id"]
    rows = [i for i, s in enumerate(splits) if s == split]
    kept = [i for i in rows if reader is None or images[i] in reader]
    return table.select(kept), len(rows) - len(kept)


class QAExamples(Dataset):
    """``ex[i]`` -> one QA with its image grid, question ids and 4 candidates in this epoch's order."""

    def __init__(self, table: ArrowTable, reader: FeatureReader | None, seed: int, train: bool) -> None:
        self.table, self.reader, self.seed, self.train = table, reader, seed, train
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Accelerate's prepared DataLoader at the start of every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.table[i]
        order = candidate_order(self.seed, self.epoch if self.train else EVAL_EPOCH, row["qa_id"])
        features = self.reader[row["image_id"]] if self.reader is not None else torch.zeros(0)
        return {
            "features": features,  # [C, H, W] float16
            "question": row["question_ids"],
            "candidates": [row["candidate_ids"][j] for j in order],
            "label": int(np.argmax(order == 0)),  # where the true answer went
            "order": order,
            "qa_id": row["qa_id"],
            "type": row["type"],
            "target": row["target"],
        }


def pad(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> ``[S, L]`` zero-padded ids (PAD = 0) and ``[S]`` lengths."""
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s)
    return out, lengths


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    question, question_len = pad([it["question"] for it in items])  # [B, Lq], [B]
    cands, cand_len = pad([c for it in items for c in it["candidates"]])  # [B*K, La], [B*K]
    b, k = len(items), len(items[0]["candidates"])
    return {
        "features": torch.stack([it["features"] for it in items]),  # [B, C, H, W]
        "question": question,
        "question_len": question_len,
        "candidates": cands.view(b, k, -1),  # [B, K, La]
        "candidate_len": cand_len.view(b, k),
        "label": torch.tensor([it["label"] for it in items]),
        "order": torch.from_numpy(np.stack([it["order"] for it in items])),  # [B, K]
        "qa_id": torch.tensor([it["qa_id"] for it in items]),
        "type": torch.tensor([it["type"] for it in items]),
        "target": _targets([it["target"] for it in items]),  # [B, H*W], zeros without a box
    }


def _targets(rows: list[list[float]]) -> torch.Tensor:
    n = max((len(r) for r in rows), default=0)
    out = torch.zeros(len(rows), n)
    for i, r in enumerate(rows):
        if r:
            out[i] = torch.tensor(r)
    return out


class EpochSampler(Sampler[int]):
    """A permutation of the rows drawn from ``(seed, epoch)``: reproducible, and the same after a resume."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in ("features", "question", "question_len", "candidates", "candidate_len")}
