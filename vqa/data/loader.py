"""Examples for training and evaluation: grid features (read from the store) + tokenised QA, shuffled candidates.

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

from .visual7w import N_CANDIDATES
from ..features.store import FeatureReader

STANDARD_COLUMNS = ("qa_id", "image_id", "split", "type", "family", "question_ids", "candidate_ids", "label", "target")
EVAL_EPOCH = 1_000_003  # the candidate order used for evaluation (fixed by the seed)


def candidate_order(seed: int, epoch: int, qa_id: int, k: int = N_CANDIDATES) -> np.ndarray:
    return np.random.default_rng([seed, epoch, qa_id]).permutation(k)


def split_rows(table: ArrowTable, split: str, reader: FeatureReader | None = None) -> tuple[ArrowTable, int]:
    """Rows of one split whose image has features; returns (rows, number dropped for missing features)."""
    splits, images = table["split"], table["image_id"]
    rows = [i for i, s in enumerate(splits) if s == split]
    kept = [i for i in rows if reader is None or images[i] in reader]
    return table.select(kept), len(rows) - len(kept)


class QAExamples(Dataset):
    """``ex[i]`` -> one QA with its image grid, question ids and its candidates in this epoch's order."""

    def __init__(self, table: ArrowTable, reader: FeatureReader | None, seed: int, train: bool) -> None:
        self.reader, self.seed, self.train = reader, seed, train
        self.epoch = 0
        self._last: tuple[int | None, torch.Tensor | None] = (None, None)
        # plain columns, read once: formatting one Arrow row per question cost a tenth of a CPU training step
        self.columns = table.select_columns(["qa_id", "image_id", "type", "question_ids", "candidate_ids"]).to_dict()
        self.targets = dense_targets(table.with_format("arrow")["target"])  # [n, H*W] float32, zeros: no box
        # the task's per-candidate inputs (pointing: "boxes" [n, K, 4], (x0, y0, x1, y1) in [0, 1]), by name
        self.per_candidate = {name: np.asarray(table[name], dtype=np.float32)
                              for name in table.column_names if name not in STANDARD_COLUMNS}  # fmt: skip

    def set_epoch(self, epoch: int) -> None:
        """Called by Accelerate's prepared DataLoader at the start of every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.targets)

    def _grid(self, image_id: int) -> torch.Tensor:
        """The image's grid; the questions of one image come in a row (``ImageMajorSampler``, file order), so
        one remembered row means one store read per image and batch."""
        if self.reader is None:
            return torch.zeros(0)
        if self._last[0] != image_id:
            self._last = (image_id, self.reader[image_id])
        return self._last[1]

    def __getitem__(self, i: int) -> dict[str, Any]:
        col = self.columns
        order = candidate_order(self.seed, self.epoch if self.train else EVAL_EPOCH, col["qa_id"][i])
        item = {
            "image_id": col["image_id"][i],
            "features": self._grid(col["image_id"][i]),  # [C, H, W] float16
            "question": col["question_ids"][i],
            "candidates": [col["candidate_ids"][i][j] for j in order],
            "label": int(np.argmax(order == 0)),  # where the true answer went
            "order": order,
            "qa_id": col["qa_id"][i],
            "type": col["type"][i],
            "target": self.targets[i],  # [H*W]
            "per_candidate": {name: values[i][order] for name, values in self.per_candidate.items()},  # [K, ...]
        }
        return item


def dense_targets(column: Any) -> np.ndarray:
    """An Arrow list<float> column of grounding densities ([] without a box) -> ``[n, H*W]`` float32, zero rows
    without a box. One array instead of n Python lists of floats (Visual7W: 70,000 x 196 floats)."""
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    offsets = arr.offsets.to_numpy(zero_copy_only=False)  # [n + 1], into arr.values (slices included)
    values = arr.values.to_numpy(zero_copy_only=False).astype(np.float32)
    lengths = np.diff(offsets)
    cells = int(lengths.max()) if len(lengths) else 0
    out = np.zeros((len(lengths), cells), dtype=np.float32)
    rows = np.flatnonzero(lengths == cells) if cells else np.zeros(0, dtype=int)
    out[rows] = values[offsets[rows, None] + np.arange(cells)]
    return out


def pad(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> ``[S, L]`` zero-padded ids (PAD = 0) and ``[S]`` lengths."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    out = np.zeros((len(seqs), int(lengths.max())), dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return torch.from_numpy(out), torch.from_numpy(lengths)


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Items -> a batch holding each distinct image's grid once: ``features`` [I, C, H, W] and ``image_index`` [B]
    (question b is about ``features[image_index[b]]``)."""
    question, question_len = pad([it["question"] for it in items])  # [B, Lq], [B]
    cands, cand_len = pad([c for it in items for c in it["candidates"]])  # [B*K, La], [B*K]
    b, k = len(items), len(items[0]["candidates"])
    firsts, image_index = dedupe([it["image_id"] for it in items])
    per_candidate = {name: torch.from_numpy(np.stack([it["per_candidate"][name] for it in items]))
                     for name in items[0]["per_candidate"]}  # fmt: skip
    return {
        "per_candidate": per_candidate,  # name -> [B, K, ...], in each question's candidate order
        "features": torch.stack([items[i]["features"] for i in firsts]),  # [I, C, H, W]
        "image_index": image_index,  # [B]
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


def dedupe(keys: Sequence[Any]) -> tuple[list[int], torch.Tensor]:
    """Keys of a batch's questions (their images) -> the position of each distinct key's first question, and
    ``[B]`` the slot of every question among those distinct keys."""
    slot: dict[Any, int] = {}
    firsts: list[int] = []
    for i, key in enumerate(keys):
        if key not in slot:
            slot[key] = len(firsts)
            firsts.append(i)
    return firsts, torch.tensor([slot[key] for key in keys])


def _targets(rows: list[Sequence[float]]) -> torch.Tensor:
    n = max((len(r) for r in rows), default=0)
    out = torch.zeros(len(rows), n)
    for i, r in enumerate(rows):
        if len(r):
            out[i] = torch.as_tensor(r)
    return out


class EpochSampler(Sampler[int]):
    """A permutation of the rows drawn from ``(seed, epoch)``: reproducible, and the same after a resume.

    ``train.batching=question``: every question on its own, as in most VQA code.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


class ImageMajorSampler(EpochSampler):
    """The images in a random order, each image's questions together (in a random order of their own).

    ``train.batching=image``: a batch of B questions then holds about B / (questions per image) images, so the
    loader reads and the model projects each grid once for all its questions instead of once per question. Still
    a pure function of ``(seed, epoch)`` (resume, 1 vs N processes), and a new order every epoch.
    """

    def __init__(self, image_ids: Sequence[int], seed: int) -> None:
        super().__init__(len(image_ids), seed)
        groups: dict[int, list[int]] = {}
        for row, image in enumerate(image_ids):
            groups.setdefault(int(image), []).append(row)
        self.groups = list(groups.values())

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        rows: list[int] = []
        for g in rng.permutation(len(self.groups)).tolist():
            rows.extend(self.groups[g][j] for j in rng.permutation(len(self.groups[g])).tolist())
        return iter(rows)


def make_sampler(batching: str, table: ArrowTable, seed: int) -> EpochSampler:
    """The training order for ``train.batching`` (image | question)."""
    return ImageMajorSampler(table["image_id"], seed) if batching == "image" else EpochSampler(len(table), seed)


def model_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """What the model's ``forward`` takes from a batch: the common inputs and the task's per-candidate ones."""
    keys = ("features", "image_index", "question", "question_len", "candidates", "candidate_len")
    return {k: batch[k] for k in keys} | batch["per_candidate"]


def keep_rng(loader: Any) -> Any:
    """Iterate a resumed mid-epoch loader without letting its start move the restored RNG.

    Why: a DataLoader iterator draws a base seed from the global generator when it starts. The interrupted run
    drew it at the start of the epoch, before the state that ``load_state`` restored; drawing it again would
    shift every later dropout mask.
    """
    state = torch.get_rng_state()
    for n, batch in enumerate(loader):
        if n == 0:
            torch.set_rng_state(state)
        yield batch
