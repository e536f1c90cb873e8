"""Open-ended answers (``make eval ARGS="eval.mode=open eval.topk=5"``): no candidates, the model answers.

The toolkit's ``evaluate.py --mode open --topk K``: each results entry lists ranked answers; a question counts when
its true answer equals (lowercase, nothing else normalised) one of the first K. Both heads answer:

    decoder   beam search over words (``DecoderNet.generate``), best mean log-likelihood first
    score     the answers seen in training for the question's type (the ``POOL`` most frequent), ranked by the
              model's score: it can only give an answer it was trained on

Beside the model, the toolkit's prior: the K most frequent training answers of the question's type.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from ..common.errors import VQAError
from ..common.files import atomic_write_dir, atomic_write_json, atomic_write_text
from ..common.progress import track
from ..data.families import question_family
from ..data.loader import pad
from ..data.visual7w import QA, TYPE_INDEX
from ..data.words import END_WORD, detokenize, token_ids
from ..run import Run
from .evaluate import split_loader
from .scoring import result_entry, write_results

POOL = 100  # answers per question type the score head ranks (the toolkit's prior reaches 0.37 on val at 100)


def answer_pool(train: Sequence[QA]) -> dict[str, list[str]]:
    """Per question type, the training answers by frequency (lowercase-distinct; the commonest spelling kept)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    spelling: dict[str, Counter] = defaultdict(Counter)
    for q in train:
        counts[q.type][q.answer.lower()] += 1
        spelling[q.answer.lower()][q.answer] += 1
    return {t: [spelling[a].most_common(1)[0][0] for a, _ in c.most_common()] for t, c in counts.items()}


def open_correct(answer: str, ranked: Sequence[str], k: int) -> bool:
    """The toolkit's open-mode rule: the true answer among the first ``k``, compared lowercase."""
    return answer.lower() in [r.lower() for r in ranked[:k]]


def open_scores(answers: Mapping[int, Sequence[str]], qas: Sequence[QA], k: int) -> dict[str, Any]:
    """Top-1 and top-``k`` accuracy overall, per type and per question family, of ranked ``answers`` by qa_id."""
    rows: dict[str, dict[str, list[tuple[bool, bool]]]] = {"type": defaultdict(list), "family": defaultdict(list)}
    every = []
    for q in qas:
        hit = (open_correct(q.answer, answers[q.qa_id], 1), open_correct(q.answer, answers[q.qa_id], k))
        every.append(hit)
        rows["type"][q.type].append(hit)
        rows["family"][question_family(q.question)].append(hit)

    def rate(hits: list[tuple[bool, bool]], i: int) -> float:
        return sum(h[i] for h in hits) / len(hits) if hits else float("nan")

    out: dict[str, Any] = {"n": len(every), "topk": k, "top1": rate(every, 0), "accuracy": rate(every, 1)}
    for name, key in (("type", "per_type"), ("family", "per_question_type")):
        out[f"{key}_top1"] = {g: rate(h, 0) for g, h in sorted(rows[name].items())}
        out[key] = {g: rate(h, 1) for g, h in sorted(rows[name].items())}
        out[f"{key}_n"] = {g: len(h) for g, h in sorted(rows[name].items())}
    return out


def prior_answers(pool: Mapping[str, Sequence[str]], qas: Sequence[QA], k: int) -> dict[int, list[str]]:
    """The toolkit's prior: the ``k`` most frequent training answers of each question's type."""
    return {q.qa_id: list(pool.get(q.type, []))[:k] for q in qas}


# ------------------------------------------------------------------------------------------------ the heads
class Generate:
    """The decoder head: beam search, ``k`` beams."""

    def __init__(self, tokenizer: Any, k: int, max_words: int) -> None:
        self.tokenizer, self.k, self.max_words = tokenizer, k, max_words

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> list[list[tuple[str, float]]]:
        words, scores = model.generate(batch["features"], batch["question"], batch["question_len"],
                                       batch["image_index"], self.k, self.max_words)  # fmt: skip
        return [[(detokenize(self.tokenizer, w.tolist()), float(s)) for w, s in zip(ws, ss, strict=True)]
                for ws, ss in zip(words.cpu(), scores.cpu(), strict=True)]  # fmt: skip


@dataclass(frozen=True)
class Generated:
    """One answer the decoder wrote for a question (``Predictor.generate``, the explorer)."""

    answer: str
    probability: float  # of writing exactly these words, then the end
    score: float  # mean log-likelihood per step: the rank among the answers, the multiple-choice score
    words: list[str]  # the steps, the end included
    attention_words: np.ndarray  # [T, H, W], one map per step


def generate_with_maps(model: Any, tokenizer: Any, batch: Mapping[str, Any], k: int,
                       max_words: int) -> list[list[Generated]]:  # fmt: skip
    """The decoder's ``k`` best answers to each question of ``batch``, best first, with their words' maps: beam
    search, then its words teacher-forced, which gives each answer the score and maps multiple choice would give
    it. Beams that read the same once detokenised are kept once."""
    inputs = (batch["features"], batch["question"], batch["question_len"])
    words, _ = model.generate(*inputs, batch["image_index"], k, max_words)  # [B, k, L], 0 after the end
    lens = (words != 0).sum(2)  # [B, k]
    scores, attention = model(*inputs, words, lens, batch["image_index"])  # [B, k], [B, k, T, H, W]
    out = []
    for b in range(len(words)):
        mine: dict[str, Generated] = {}
        for j in range(words.shape[1]):
            ids = words[b, j, : lens[b, j]].tolist()
            steps, score = len(ids) + 1, float(scores[b, j])
            answer = detokenize(tokenizer, ids)
            mine.setdefault(answer, Generated(answer, float(np.exp(score * steps)), score,
                                              [*tokenizer.convert_ids_to_tokens(ids), END_WORD],
                                              attention[b, j, :steps].float().cpu().numpy()))  # fmt: skip
        out.append(list(mine.values()))
    return out


class RankPool:
    """The score head: each question's type pool (``answer_pool``, the ``POOL`` most frequent) scored as its
    candidates; the ``k`` best."""

    def __init__(self, tokenizer: Any, pool: Mapping[str, Sequence[str]], k: int, max_len: int) -> None:
        self.k = k
        self.pool = {TYPE_INDEX.index(t): list(answers)[:POOL] for t, answers in pool.items()}
        self.tokens = {t: pad(token_ids(tokenizer, answers, max_len)) for t, answers in self.pool.items()}

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> list[list[tuple[str, float]]]:
        out = []
        for b, t in enumerate(batch["type"].tolist()):  # one question at a time: its own type's pool
            if t not in self.pool:  # a type never seen in training: no answer to give
                out.append([])
                continue
            ids, lens = self.tokens[t]  # [P, La], [P]
            dev = batch["question"].device
            i = batch["image_index"][b]
            scores, _ = model(batch["features"][i : i + 1], batch["question"][b : b + 1],
                              batch["question_len"][b : b + 1], ids[None].to(dev), lens[None].to(dev))  # fmt: skip
            top = scores[0].float().topk(min(self.k, len(ids)))
            out.append([(self.pool[t][j], float(s)) for s, j in zip(top.values, top.indices.tolist(), strict=True)])
        return out


def answerer(head: str, tokenizer: Any, pool: Mapping[str, Sequence[str]], k: int, max_len: int) -> Any:
    """The head's way to answer open-ended; a generated answer has at most ``max_len`` words (``text.max_len``,
    what training read of an answer; ``vqa.Predictor.generate`` uses the same)."""
    return Generate(tokenizer, k, max_len) if head == "decoder" else RankPool(tokenizer, pool, k, max_len)


def answer_split(run: Run, accelerator: Accelerator, split: str, k: int,
                 pool: Mapping[str, Sequence[str]]) -> tuple[dict[int, list], list[QA], int]:  # fmt: skip
    """Every question of ``split`` answered open-ended by the run's model on all processes: qa_id -> the ``k``
    best (answer, score), on the main process; the split's QA; how many were skipped (no features)."""
    model, _, _, tokenizer = run.trained
    qas, loader, skipped = split_loader(run, split)
    answer = answerer(model.spec.head, tokenizer, pool, k, run.cfg.text.max_len)
    model, loader = accelerator.prepare(model, loader)
    net = accelerator.unwrap_model(model).eval()
    mine = []
    with torch.inference_mode():
        for batch in track(loader, f"open-ended {split}", "batch", disable=not accelerator.is_local_main_process):
            mine += zip(batch["qa_id"].tolist(), answer(net, batch), strict=True)
    return dict(gather_object(mine)), qas, skipped  # a qa_id repeated to even out the last batch counts once


def generated_split(run: Run, split: str, k: int) -> dict[int, list[Generated]]:
    """The decoder's ``k`` best answers to every question of ``split`` with their words' maps, on this process
    (the explorer's): qa_id -> ``generate_with_maps``."""
    model, _, _, tokenizer = run.trained
    _, loader, _ = split_loader(run, split)
    net, out = model.eval(), {}
    device = next(net.parameters()).device
    with torch.inference_mode():
        for batch in track(loader, f"generating answers ({split})", "batch"):
            batch = {n: v.to(device) if isinstance(v, torch.Tensor) else v for n, v in batch.items()}
            out.update(zip(batch["qa_id"].tolist(), generate_with_maps(net, tokenizer, batch, k,
                                                                      run.cfg.text.max_len), strict=True))  # fmt: skip
    return out


def evaluate_open(run: Run, accelerator: Accelerator) -> dict[str, Any] | None:
    """The open-ended eval stage -> ``<run.dir>/eval/<split>_open/``: the toolkit's results file (``eval.topk``
    answers per question, best first), ``per_question.jsonl`` (with scores) and ``metrics.json`` (top-1 and
    top-k per type and family, the prior beside them). Returns the metrics on the main process."""
    cfg = run.cfg
    if not run.task.answers_open:
        raise VQAError(f"eval.mode=open is the telling protocol: a {run.task.name} run is scored by eval.mode=mc")
    split, k = cfg.eval.split, cfg.eval.topk
    pool = answer_pool(run.dataset.split("train"))  # the score head's answers and the prior's, counted once
    answers, qas, skipped = answer_split(run, accelerator, split, k, pool)
    if not accelerator.is_main_process:
        return None
    model, meta, path, _ = run.trained
    qas = [q for q in qas if q.qa_id in answers]
    ranked = {i: [a for a, _ in answers[i]] for i in answers}
    prior = prior_answers(pool, qas, k)
    metrics = {"split": split, "mode": "open", "model_head": model.spec.head, **open_scores(ranked, qas, k),
               "prior": open_scores(prior, qas, k), "checkpoint": str(path), "epoch": meta.get("epoch"),
               "skipped_no_features": skipped, "processes": accelerator.num_processes}  # fmt: skip
    rows = [{"qa_id": q.qa_id, "type": q.type, "question": q.question, "answer": q.answer,
             "answers": [{"answer": a, "score": s} for a, s in answers[q.qa_id]],
             "correct": open_correct(q.answer, ranked[q.qa_id], k)} for q in qas]  # fmt: skip

    def write(tmp: str) -> None:
        write_results(Path(tmp) / "predictions.json", [result_entry(q, ranked[q.qa_id]) for q in qas])
        atomic_write_text(Path(tmp) / "per_question.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        atomic_write_json(Path(tmp) / "metrics.json", metrics)

    atomic_write_dir(run.open_dir(split), write)
    return metrics


def open_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The stage's summary: the model's and the prior's top-1 and top-k, per type."""
    k = metrics["topk"]
    lines = [f"{'':<10}{'top-1':>8}{f'top-{k}':>8}   (n)"]
    for name, m in (("model", metrics), ("prior", metrics["prior"])):
        lines.append(f"{name:<10}{m['top1']:>8.4f}{m['accuracy']:>8.4f}   {m['n']}")
    for t, n in metrics["per_type_n"].items():
        lines.append(f"  {t:<8}{metrics['per_type_top1'][t]:>8.4f}{metrics['per_type'][t]:>8.4f}   {n}")
    return lines
