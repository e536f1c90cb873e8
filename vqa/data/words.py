"""Words: the tokenizer and the tokenised QA table (pretrained word vectors: ``vectors.py``).

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

from datasets import Dataset, load_from_disk
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .visual7w import N_CANDIDATES, QA, TYPE_INDEX
from ..common.errors import VQAError
from .grounding import grounding_targets
from ..common.files import atomic_write_dir
from .families import question_family

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


GLUED = set(".,!?;:%)'")  # written against the word before them ("three." "man's"); "'" also to the word after


def detokenize(tokenizer: PreTrainedTokenizerFast, ids: Sequence[int]) -> str:
    """Generated token ids (up to the end, id 0) -> an answer as Visual7W writes one: words joined by spaces,
    punctuation against the word before it, the first letter capitalised ("Three.", "On the man's head.")."""
    words = tokenizer.convert_ids_to_tokens(_until_end(ids))
    text = ""
    for w in words:
        text += w if not text or w in GLUED or text.endswith("'") else " " + w
    return text[:1].upper() + text[1:]


END_WORD = "<end>"  # the decoder's last step (it reads the answer, then predicts its end)


def answer_steps(tokenizer: PreTrainedTokenizerFast, answer: str, max_len: int) -> list[str]:
    """The decoder's steps for ``answer``, one attention map each: its tokens as the model reads them, the end."""
    ids = token_ids(tokenizer, [answer], max_len)[0]
    return [*tokenizer.convert_ids_to_tokens(ids), END_WORD]


def _until_end(ids: Sequence[int]) -> list[int]:
    return list(ids[: list(ids).index(0)]) if 0 in ids else list(ids)


def qa_table(task: Any, dataset: Any, qas: Sequence[QA], tokenizer: PreTrainedTokenizerFast, max_len: int,
             targets: Sequence[Sequence[float]] | None = None) -> Dataset:  # fmt: skip
    """One row per QA: ids of the question and of the K candidates (answer first, as in the file), the grounding
    target on the feature grid (``[]`` when the QA has no box), and the ``task``'s per-candidate columns (pointing:
    the candidate boxes' geometry); ``task.candidate_tokens`` says how a candidate reads."""
    questions = token_ids(tokenizer, [q.question for q in qas], max_len)
    flat = task.candidate_tokens(tokenizer, qas, max_len)
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
        **task.candidate_columns(dataset, qas),
    }
    return Dataset.from_dict(columns)


def save_qa(table: Dataset, path: str | Path) -> Dataset:
    """Save the table as Arrow and reopen it memory-mapped."""
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # a bar for a one-second save is noise in every training log
    atomic_write_dir(path, table.save_to_disk)
    return load_from_disk(str(path))


def prepare_qa(run: Any, accelerator: Any, reuse_tokenizer: bool,
               grid: tuple[int, int, int]) -> tuple[PreTrainedTokenizerFast, Dataset]:  # fmt: skip
    """The run's tokenizer and tokenised QA table (with grounding targets on the ``grid``), shared via disk.

    The main process builds the tokenizer from the train split (or reuses the run's own when ``reuse_tokenizer``:
    a resumed run must keep its vocabulary) and writes ``<run.dir>/tokenizer`` and ``<run.dir>/qa``; every process
    then reads the same files, so N processes never tokenise differently."""
    cfg, dataset = run.cfg, run.dataset  # on every process: a bad file fails all of them alike, none waits forever
    if accelerator.is_main_process:
        if reuse_tokenizer and (run.tokenizer_dir / "tokenizer.json").is_file():
            tokenizer = load_tokenizer(run.tokenizer_dir)
        else:
            tokenizer = build_tokenizer(dataset.split("train"), cfg.text.min_freq, run.task.reads_candidates)
            save_tokenizer(tokenizer, run.tokenizer_dir)
        targets = grounding_targets(run.grounding, dataset, grid)
        save_qa(qa_table(run.task, dataset, dataset.qa, tokenizer, cfg.text.max_len, targets), run.qa_dir)
    accelerator.wait_for_everyone()
    return load_tokenizer(run.tokenizer_dir), load_from_disk(str(run.qa_dir))
