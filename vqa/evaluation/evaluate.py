"""The eval stage: score every QA of a split with a trained model, in the official protocol, with grounding.

Writes ``<run.dir>/eval/<split>/``: ``predictions.json`` (the toolkit's results format, chosen candidate first,
verbatim strings: the official ``evaluate.py`` gives the same accuracy), ``metrics.json`` and
``per_question.jsonl``. Grounding metrics, when ``data.grounding`` is set, use the chosen candidate's attention
(glimpses averaged): *hit* = share of grounded questions whose attention peak (the centre of the peak cell,
mapped to image pixels through the recorded squash resize) falls inside a grounding box; *mass* = mean share of
the attention on cells, weighted by how much of each cell the boxes cover. A uniform map (the ``no_attention`` and
``blind`` variants, or any map whose max equals its min) gets no hit rate: its argmax is just the top-left
cell, so a "hit" would measure where the boxes tend to lie, not the model; its mass is still reported (it is the
boxes' share of the image, the chance level for mass). ``hit`` is null when no map of the split attends.

Accuracy is also reported by question family (``per_question_type``, the question's leading words, see
``families.question_family``), as the VQA evaluation reports question types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from ..common.errors import VQAError
from ..common.files import atomic_write_dir, atomic_write_json, atomic_write_text, reached
from ..config import Config
from ..data.boxes import Box
from ..data.grounding import grounding_scores, grounding_summary
from ..data.loader import QAExamples, collate, model_inputs, split_rows
from ..data.visual7w import TYPE_INDEX
from ..data.words import qa_table
from ..features.images import header_size
from ..features.store import check_covers
from ..provenance import check_data, data_fingerprint, shared_images
from ..run import Run, as_run
from .calibration import calibration_summary, temperature_of
from .scoring import (
    per_question_type_table,
    per_type_table,
    question_family,
    rank_order,
    result_entry,
    score_results,
    strictly_best,
    write_results,
)


def predict_pass(model: Any, loader: Any, accelerator: Any, maps: str = "none") -> dict[str, Any]:
    """Score every example of a prepared loader on all processes; gathered, de-duplicated results on each.

    Returns numpy arrays: ``qa_id [N]``, ``type [N]``, ``scores [N, K]`` and ``order [N, K]`` (candidate k of the
    scores is the file's candidate ``order[k]``; the true answer is file candidate 0), and with ``maps`` the
    ``attention``: ``each`` [N, K, G, H, W] every glimpse (the decoder: every word, ``pad_steps``), ``mean``
    [N, K, 1, H, W] their mean (what grounding metrics read: a fixed shape whatever the answers' lengths).
    ``gather_for_metrics`` drops the samples Accelerate repeats to even out the last batch, so no qa_id is counted
    twice or missed, whatever the number of processes.
    """
    model.eval()
    parts: dict[str, list] = {"qa_id": [], "type": [], "scores": [], "order": [], "attention": []}
    with torch.inference_mode():
        for batch in loader:
            scores, attention = model(**model_inputs(batch))
            keep = {"qa_id": batch["qa_id"], "type": batch["type"], "scores": scores, "order": batch["order"]}
            if maps != "none":
                keep["attention"] = attention.mean(2, keepdim=True) if maps == "mean" else attention
            for key, value in accelerator.gather_for_metrics(keep).items():
                parts[key].append(value.float().cpu() if value.is_floating_point() else value.cpu())
    parts["attention"] = pad_steps(parts["attention"])
    out = {k: torch.cat(v).numpy() for k, v in parts.items() if v}
    order = np.argsort(out["qa_id"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def pad_steps(maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """Batches of [b, K, T_i, H, W] maps -> all with the longest T: the decoder's T is each batch's longest answer.
    The added steps repeat each candidate's mean map, as the decoder's own steps past an answer's end do, so a mean
    over T stays the mean over its words."""
    t = max((m.shape[2] for m in maps), default=0)
    return [torch.cat([m, m.mean(2, keepdim=True).expand(-1, -1, t - m.shape[2], -1, -1)], 2) for m in maps]


def accuracy_of(pass_out: dict[str, Any]) -> dict[str, Any]:
    """Accuracy overall and per type from a ``predict_pass``; a tie at the top counts wrong (``strictly_best``, the
    vectorised form of ``scoring.choose``, so the val accuracy of training is the eval stage's rule)."""
    scores, order = pass_out["scores"], pass_out["order"]  # [N, K], [N, K]
    true_pos = np.argmax(order == 0, axis=1)  # [N]: where the answer sits in the score vector
    correct = strictly_best(scores, true_pos)  # [N] bool
    types = np.array([TYPE_INDEX[t] for t in pass_out["type"]])
    per_type = {t: float(correct[types == t].mean()) for t in sorted(set(types))}
    top = scores.max(1, keepdims=True)  # [N, 1]
    log_z = top[:, 0] + np.log(np.exp(scores - top).sum(1))  # [N]: log-sum-exp over the candidates
    loss = float((log_z - scores[np.arange(len(scores)), true_pos]).mean()) if len(scores) else float("nan")
    return {"n": len(correct), "accuracy": float(correct.mean()), "per_type": per_type, "correct": correct,
            "loss": loss}  # loss: the cross-entropy of the answer, as in training (without the box losses)


def to_file_order(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per-candidate values (scores, attention maps) re-indexed like the file's candidates (answer first):
    the model saw file candidate ``order[k]`` in position k."""
    out = np.empty_like(values)
    out[order] = values
    return out


def _per_question(
    task: Any, out: dict[str, Any], by_id: dict[int, Any], dataset: Any, grounding: dict[int, list[Box]] | None,
    uniform: bool,
) -> tuple[list[dict], list[dict], list[bool | None], list[float]]:
    """Results entries, per-question rows, grounding hits and masses for a ``predict_pass`` output: one loop, so the
    results file, the rows and the grounding all use the same chosen candidate (``rank_order``: ties are wrong)."""
    entries, rows, hits, masses = [], [], [], []
    for n, qa_id in enumerate(out["qa_id"].tolist()):
        q = by_id[qa_id]
        scores = to_file_order(out["scores"][n], out["order"][n])  # [K], file order (answer first)
        ranking = rank_order(q.candidates, scores.tolist(), q.answer)
        ranked = [q.candidates[i] for i in ranking]
        entries.append(result_entry(q, [task.result_answer(c) for c in ranked]))
        cands = [{"answer": c, "score": float(s)} for c, s in zip(q.candidates, scores, strict=True)]
        rows.append({"qa_id": qa_id, "type": q.type, "question_type": question_family(q.question),
                     "question": q.question, "answer": q.answer, "candidates": cands, "chosen": ranked[0],
                     "correct": ranked[0].lower() == q.answer.lower()})  # fmt: skip
        if grounding is not None and qa_id in grounding:
            k = int(np.argmax(out["order"][n] == ranking[0]))  # position of the chosen candidate in the scores
            att = out["attention"][n, k].mean(0)  # [H, W], glimpses averaged
            hit, mass = grounding_scores(att, grounding[qa_id], *header_size(dataset.image_path(q.image_id)), uniform)
            hits.append(hit)
            masses.append(mass)
    return entries, rows, hits, masses


@dataclass
class SplitPass:
    """A trained run's scores (and attention) on every question of a split, with what produced them."""

    out: dict[str, Any]  # predict_pass's arrays, by qa_id
    model: Any  # unwrapped
    meta: dict[str, Any]
    path: Path  # the checkpoint
    qas: list[Any]  # the split's QA
    skipped: int  # questions whose image has no features


def split_loader(run: Run, split: str) -> tuple[list[Any], DataLoader, int]:
    """The split's QA, a loader over those whose image has features (for the run's trained model), and how many
    have none. Refuses a store whose grid is not the one the model was trained on."""
    cfg, dataset, reader = run.cfg, run.dataset, run.reader
    model, meta, path, tokenizer = run.trained
    if tuple(reader.grid) != tuple(model.spec.grid):
        raise VQAError(f"{path} was trained on {model.spec.grid} features, {reader.root} holds {reader.grid}")
    check_data(meta, data_fingerprint(dataset, run.tokenizer_dir / "tokenizer.json"), str(path), print)
    leak = shared_images(dataset, split)
    if leak:
        raise VQAError(f"the {split} split shares {len(leak)} image(s) with the train split (e.g. image_id "
                       f"{', '.join(map(str, leak[:5]))}): its accuracy would be measured on training images",
                       ["give every image to one split only in the annotations file"])  # fmt: skip
    qas = dataset.split(split)
    check_covers(reader, [q.image_id for q in qas])
    table = qa_table(run.task, dataset, qas, tokenizer, cfg.text.max_len)
    rows, skipped = split_rows(table, split, reader)
    loader = DataLoader(QAExamples(rows, reader, cfg.seed, train=False), batch_size=cfg.eval.batch_size,
                        collate_fn=collate)  # fmt: skip
    return qas, loader, skipped


def split_pass(run: Run, accelerator: Accelerator, split: str, maps: str) -> SplitPass:
    """Score every question of ``split`` with the run's ``eval.checkpoint`` model on all processes."""
    model, meta, path, _ = run.trained
    qas, loader, skipped = split_loader(run, split)
    model, loader = accelerator.prepare(model, loader)
    out = predict_pass(model, loader, accelerator, maps)
    return SplitPass(out, accelerator.unwrap_model(model), meta, path, qas, skipped)


def evaluate(cfg: Config | Run, accelerator: Accelerator) -> dict[str, Any] | None:
    """Run the eval stage; returns the metrics on the main process (None elsewhere)."""
    run = as_run(cfg)
    split, dataset, grounding = run.cfg.eval.split, run.dataset, run.grounding
    p = split_pass(run, accelerator, split, "mean" if grounding is not None else "none")
    if not accelerator.is_main_process:
        return None
    out, path, meta, skipped = p.out, p.path, p.meta, p.skipped
    by_id = {q.qa_id: q for q in p.qas}
    variant = p.model.spec.variant
    uniform = not p.model.spec.attends  # no hit rate for a flat map by construction
    entries, per_question, hits, masses = _per_question(run.task, out, by_id, dataset, grounding, uniform)
    official = score_results(entries, [by_id[i] for i in out["qa_id"].tolist()], split)
    direct = accuracy_of(out)
    if abs(official["accuracy"] - direct["accuracy"]) > 1e-9:  # the results file must say what we measured
        raise VQAError(f"internal check failed: the results file scores {official['accuracy']}, "
                       f"the model {direct['accuracy']}")  # fmt: skip
    metrics = {"split": split, "n": official["n"], "accuracy": official["accuracy"], "per_type": official["per_type"],
               "per_type_n": official["per_type_n"], "per_question_type": official["per_question_type"],
               "per_question_type_n": official["per_question_type_n"], "model_variant": variant,
               "checkpoint": str(path), "epoch": meta.get("epoch"),
               "skipped_no_features": skipped, "processes": accelerator.num_processes}  # fmt: skip
    if grounding is not None:
        metrics["grounding"] = grounding_summary(hits, masses)
    label = np.argmax(out["order"] == 0, axis=1)  # where the true answer sat in each score vector
    metrics["calibration"] = calibration_summary(out["scores"], label, direct["correct"], temperature_of(meta))

    def write(tmp: str) -> None:  # the three files are swapped in together: never metrics of another model
        write_results(Path(tmp) / "predictions.json", entries)
        reached("eval:predictions-written")
        atomic_write_text(Path(tmp) / "per_question.jsonl", "".join(json.dumps(r) + "\n" for r in per_question))
        atomic_write_json(Path(tmp) / "metrics.json", metrics)

    atomic_write_dir(run.eval_dir(split), write)
    return metrics


# the honest baselines, by the suffix of their run directory (``make baselines``): <run.dir>_<suffix>
BASELINE_SUFFIXES = ("attention", "no_supervision", "no_attention", "image_only", "blind", "answer_only")


def run_label(run_dir: str | Path, variant: str | None) -> str:
    """A run's row label: its directory suffix when it is a baseline's (a run without attention supervision is an
    ``attention`` model too, so the variant alone cannot tell it apart), else its model variant."""
    name = Path(run_dir).name
    for suffix in sorted(BASELINE_SUFFIXES, key=len, reverse=True):  # "no_attention" before "attention"
        if name.endswith(f"_{suffix}"):
            return suffix
    return str(variant or name)


def read_metrics(path: Path) -> dict[str, Any] | None:
    """A metrics.json of another run, or None when it is absent, unreadable or not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def comparison_rows(run: Run, metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """This run first, then every baseline run of the same experiment that has metrics for the same split."""
    rows = {run_label(run.dir, metrics.get("model_variant")): metrics}
    for suffix in BASELINE_SUFFIXES:
        other = read_metrics(run.baseline_dir(suffix).joinpath("eval", str(metrics.get("split")), "metrics.json"))
        if suffix not in rows and other is not None:
            rows[suffix] = other
    return rows


def comparison_table(run: Run, metrics: dict[str, Any]) -> str:
    """This run beside the baseline runs (``<run.dir>_<suffix>``, see ``BASELINE_SUFFIXES``), if any: the table by
    W type, then the table by question family. Old metrics files with missing keys show nan / "-"."""
    rows = comparison_rows(run, metrics)
    return per_type_table(rows) + "\n\n" + per_question_type_table(rows)


def skipped_line(metrics: dict[str, Any]) -> str | None:
    """Says how many questions were left out because their image has no features (None when none was): the
    accuracy is over the rest, which a reader must know."""
    n = metrics.get("skipped_no_features") or 0
    if not n:
        return None
    return f"skipped {n} question{'s' if n != 1 else ''}: their image has no features (see the feature manifest)"


def grounding_line(g: dict[str, Any] | None) -> str | None:
    """The grounding summary, saying why the hit rate is absent (a model whose attention is uniform has no peak).
    Reads metrics written before the hit rate was named ``hit`` (it was ``pointing``) too."""
    if not g or not g.get("n"):
        return None
    value = g.get("hit", g.get("pointing"))
    hit = "n/a (uniform attention)" if value is None else f"{value:.3f}"
    mass = "n/a" if g.get("mass") is None else f"{g['mass']:.3f}"
    return f"grounding ({g['n']} questions): hit {hit}, attention mass in boxes {mass}"
