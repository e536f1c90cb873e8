"""The eval stage: score every QA of a split with a trained model, in the official protocol, with grounding.

Writes ``<run.dir>/eval/<split>/``: ``predictions.json`` (the toolkit's results format, chosen candidate first,
verbatim strings: the official ``evaluate.py`` gives the same accuracy), ``metrics.json`` and
``per_question.jsonl``. Grounding metrics, when ``data.grounding`` is set, use the chosen candidate's attention
(glimpses averaged): *pointing* = share of grounded questions whose attention peak (the centre of the peak cell,
mapped to image pixels through the recorded squash resize) falls inside a grounding box; *mass* = mean share of
the attention on cells, weighted by how much of each cell the boxes cover.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from .checkpoint import load_trained
from .config import Config
from .data import QUESTION_TYPES, Box, load_grounding, load_telling
from .errors import VQAError
from .features import FeatureReader, features_dir
from .grounding import box_coverage, image_size
from .io import atomic_write_dir, atomic_write_json, atomic_write_text
from .loader import QAExamples, collate, model_inputs, split_rows
from .scoring import per_type_table, rank_candidates, result_entry, score_results, write_results
from .text import tokenise_qa


def predict_pass(model: Any, loader: Any, accelerator: Any, keep_attention: bool = False) -> dict[str, Any]:
    """Score every example of a prepared loader on all processes; gathered, de-duplicated results on each.

    Returns numpy arrays: ``qa_id [N]``, ``type [N]``, ``scores [N, K]`` and ``order [N, K]`` (candidate k of the
    scores is the file's candidate ``order[k]``; the true answer is file candidate 0), and ``attention`` when asked.
    ``gather_for_metrics`` drops the samples Accelerate repeats to even out the last batch, so no qa_id is counted
    twice or missed, whatever the number of processes.
    """
    model.eval()
    parts: dict[str, list] = {"qa_id": [], "type": [], "scores": [], "order": [], "attention": []}
    with torch.inference_mode():
        for batch in loader:
            scores, attention = model(**model_inputs(batch))
            keep = {"qa_id": batch["qa_id"], "type": batch["type"], "scores": scores, "order": batch["order"]}
            if keep_attention:
                keep["attention"] = attention
            for key, value in accelerator.gather_for_metrics(keep).items():
                parts[key].append(value.float().cpu() if value.is_floating_point() else value.cpu())
    out = {k: torch.cat(v).numpy() for k, v in parts.items() if v}
    order = np.argsort(out["qa_id"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def accuracy_of(pass_out: dict[str, Any]) -> dict[str, Any]:
    """Accuracy overall and per type from a ``predict_pass``; a tie at the top counts wrong."""
    scores, order = pass_out["scores"], pass_out["order"]
    true_pos = np.argmax(order == 0, axis=1)  # where the answer sits in the score vector
    true_score = scores[np.arange(len(scores)), true_pos]
    others = np.where(order == 0, -np.inf, scores)
    correct = true_score > others.max(axis=1)
    types = np.array([QUESTION_TYPES[t] for t in pass_out["type"]])
    per_type = {t: float(correct[types == t].mean()) for t in sorted(set(types))}
    return {"n": len(correct), "accuracy": float(correct.mean()), "per_type": per_type, "correct": correct}


def grounding_scores(attention: np.ndarray, boxes: list[Box], width: int, height: int) -> tuple[bool, float]:
    """(pointing hit, attention mass in the boxes) for one ``[H, W]`` attention map of a ``width x height`` image."""
    h, w = attention.shape
    i, j = np.unravel_index(int(np.argmax(attention)), attention.shape)
    px, py = (j + 0.5) * width / w, (i + 0.5) * height / h  # centre of the peak cell, in image pixels
    hit = any(b.x <= px < b.x + b.width and b.y <= py < b.y + b.height for b in boxes)
    mass = float((attention * box_coverage(boxes, width, height, h, w)).sum() / max(attention.sum(), 1e-12))
    return hit, mass


def to_file_order(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per-candidate values (scores, attention maps) re-indexed like the file's candidates (answer first):
    the model saw file candidate ``order[k]`` in position k."""
    out = np.empty_like(values)
    out[order] = values
    return out


def evaluate(cfg: Config, accelerator: Accelerator) -> dict[str, Any] | None:
    """Run the eval stage; returns the metrics on the main process (None elsewhere)."""
    split, run = cfg.eval.split, Path(cfg.run.dir)
    model, meta, path, tokenizer = load_trained(cfg)
    reader = FeatureReader(features_dir(cfg))
    if tuple(reader.grid) != tuple(model.spec.grid):
        raise VQAError(f"{path} was trained on {model.spec.grid} features, {reader.root} holds {reader.grid}")
    dataset = load_telling(cfg.data.annotations, cfg.data.images)
    qas = dataset.split(split)
    table = tokenise_qa(qas, tokenizer, cfg.text.max_len)
    rows, skipped = split_rows(table, split, reader)
    loader = DataLoader(QAExamples(rows, reader, cfg.seed, train=False), batch_size=cfg.eval.batch_size,
                        collate_fn=collate)  # fmt: skip
    model, loader = accelerator.prepare(model, loader)
    grounding = load_grounding(cfg.data.grounding) if cfg.data.grounding else None
    out = predict_pass(model, loader, accelerator, keep_attention=grounding is not None)
    if not accelerator.is_main_process:
        return None
    by_id = {q.qa_id: q for q in qas}
    entries, per_question, hits, masses = [], [], [], []
    for n, qa_id in enumerate(out["qa_id"].tolist()):
        q = by_id[qa_id]
        scores = to_file_order(out["scores"][n], out["order"][n])
        ranked = rank_candidates(q.candidates, scores.tolist(), q.answer)
        entries.append(result_entry(q, ranked))
        chosen = q.candidates.index(ranked[0])
        cands = [{"answer": c, "score": float(s)} for c, s in zip(q.candidates, scores, strict=True)]
        per_question.append({"qa_id": qa_id, "type": q.type, "question": q.question, "answer": q.answer,
                             "candidates": cands, "chosen": ranked[0],
                             "correct": ranked[0].lower() == q.answer.lower()})  # fmt: skip
        if grounding is not None and qa_id in grounding:
            k = int(np.argmax(out["order"][n] == chosen))  # position of the chosen candidate in the scores
            att = out["attention"][n, k].mean(0)  # [H, W], glimpses averaged
            hit, mass = grounding_scores(att, grounding[qa_id], *image_size(dataset.image_path(q.image_id)))
            hits.append(hit)
            masses.append(mass)
    official = score_results(entries, [by_id[i] for i in out["qa_id"].tolist()], split)
    direct = accuracy_of(out)
    if abs(official["accuracy"] - direct["accuracy"]) > 1e-9:  # the results file must say what we measured
        raise VQAError(f"internal check failed: the results file scores {official['accuracy']}, "
                       f"the model {direct['accuracy']}")  # fmt: skip
    metrics = {"split": split, "n": official["n"], "accuracy": official["accuracy"], "per_type": official["per_type"],
               "per_type_n": official["per_type_n"], "model_variant": accelerator.unwrap_model(model).spec.variant,
               "checkpoint": str(path), "epoch": meta.get("epoch"),
               "skipped_no_features": skipped, "processes": accelerator.num_processes}  # fmt: skip
    if grounding is not None:
        metrics["grounding"] = {"n": len(hits), "pointing": float(np.mean(hits)) if hits else None,
                                "mass": float(np.mean(masses)) if masses else None}  # fmt: skip

    def write(tmp: str) -> None:  # the three files are swapped in together: never metrics of another model
        write_results(Path(tmp) / "predictions.json", entries)
        atomic_write_text(Path(tmp) / "per_question.jsonl", "".join(json.dumps(r) + "\n" for r in per_question))
        atomic_write_json(Path(tmp) / "metrics.json", metrics)

    atomic_write_dir(run / "eval" / split, write)
    return metrics


def comparison_table(cfg: Config, metrics: dict[str, Any]) -> str:
    """This run beside the blind / no-attention runs of the same experiment (``<run.dir>_<variant>``), if any."""
    rows = {metrics["model_variant"]: metrics}
    for variant in ("attention", "no_attention", "blind"):
        other = Path(f"{cfg.run.dir}_{variant}") / "eval" / metrics["split"] / "metrics.json"
        if variant not in rows and other.is_file():
            rows[variant] = json.loads(other.read_text())
    return per_type_table(rows)
