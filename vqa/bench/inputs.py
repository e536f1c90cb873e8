"""Synthetic inputs for ``make bench``: a feature store in the real format and QA tables of Visual7W's shape,
so speed and memory are measured at the real dataset's sizes without the dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from ..data.visual7w import N_CANDIDATES, QUESTION_TYPES
from ..features.store import DTYPE, FORMAT, FeatureReader, ShardWriter, fingerprint, write_manifest

VISUAL7W_GRID = (2048, 14, 14)  # ResNet-152 at 448: what the real store holds per image


def synthetic_store(root: Path, n_images: int, grid: tuple[int, int, int] = VISUAL7W_GRID,
                    shard_size: int = 256, seed: int = 0) -> FeatureReader:  # fmt: skip
    """A feature store in the real format (shards, markers, manifest) holding random fp16 grids, image ids 1..n."""
    settings = {"format": FORMAT, "backbone": "synthetic", "weights": "random", "pretrained": False,
                "image_size": grid[1] * 32, "precision": "fp16", "grid": list(grid), "dtype": np.dtype(DTYPE).name,
                "preprocessing": {}, "shard_size": shard_size, "images_sha1": f"synthetic-{n_images}",
                "n_images": n_images}  # fmt: skip
    fp = fingerprint(settings)
    block = np.random.default_rng(seed).standard_normal((min(64, n_images), *grid), dtype=np.float32).astype(DTYPE)
    ids = list(range(1, n_images + 1))
    n_shards = -(-n_images // shard_size)
    for shard in range(n_shards):
        writer = ShardWriter(root, shard, ids[shard * shard_size : (shard + 1) * shard_size], grid)
        for start in range(0, len(writer.ids), len(block)):
            rows = list(range(start, min(start + len(block), len(writer.ids))))
            writer.write(rows, block[: len(rows)])
        writer.finish(fp, 0, 1)
    write_manifest(root, settings, n_shards, 0.0)
    return FeatureReader(root)


def synthetic_qa(image_ids: list[int], vocab: int, seed: int = 0, n_questions: int | None = None,
                 cells: int = 0) -> Any:  # fmt: skip
    """``n_questions`` tokenised questions (default one per image) spread evenly over ``image_ids``, each with 4
    candidates, lengths like Visual7W's (questions 5-12 words), and with ``cells`` > 0 a one-cell grounding target.
    """

    rng = np.random.default_rng(seed)
    n = n_questions or len(image_ids)
    images = [image_ids[j * len(image_ids) // n] for j in range(n)]  # ~n / len(image_ids) questions per image

    def words(lo: int, hi: int) -> list[int]:
        return rng.integers(2, vocab, rng.integers(lo, hi + 1)).tolist()

    return Dataset.from_dict({
        "qa_id": list(range(n)), "image_id": images, "split": ["train"] * n,
        "type": rng.integers(0, len(QUESTION_TYPES), n).tolist(),
        "question_ids": [words(5, 12) for _ in images],
        "candidate_ids": [[words(1, 6) for _ in range(N_CANDIDATES)] for _ in images],
        "label": [0] * n, "target": [np.eye(cells)[rng.integers(cells)].tolist() if cells else [] for _ in images],
    })  # fmt: skip
