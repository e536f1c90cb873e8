"""The report stage (``make inspect``): the chosen questions of a split drawn with the trained model's attention
(``panels``: one PNG each, and an index), and the interactive explorer of the whole split (``explorer``).

Which questions: ``inspect.qa_ids``, else a seeded mix of right and wrong answers from the last evaluation. The
same drawing serves ``pipelines/predict.py`` (``predict_one``) for any image.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.errors import VQAError
from ..common.files import atomic_write_bytes, atomic_write_dir, reached
from ..data.loader import QAExamples, collate, model_inputs
from ..data.tasks.pointing import image_dimensions
from ..data.words import answer_steps, qa_table
from ..evaluation.calibration import temperature_of
from ..evaluation.evaluate import to_file_order
from ..evaluation.open_ended import Generated, generate_with_maps
from ..evaluation.scoring import choose, rank_order
from ..features.images import header_size, load_image
from ..predictor import Predictor
from ..run import Run, as_run
from .explorer import build_explorer
from .panels import reliability_png, render, render_words, write_index


# ------------------------------------------------------------------------------------------------ the stage
def pick(rows: Sequence[dict[str, Any]], n: int, seed: int) -> list[int]:
    """qa_ids for the report: a mix of correct and wrong answers across types (round-robin over the groups)."""
    rng = random.Random(seed)
    groups: dict[tuple[str, bool], list[int]] = {}
    for r in rows:
        groups.setdefault((r["type"], bool(r["correct"])), []).append(r["qa_id"])
    for ids in groups.values():
        rng.shuffle(ids)
    # wrong answers first within each round: they are the rare, interesting ones
    order = sorted(groups, key=lambda g: (g[1], g[0]))
    out: list[int] = []
    while len(out) < n and any(groups.values()):
        for g in order:
            if groups[g] and len(out) < n:
                out.append(groups[g].pop())
    return out


def _choose(run: Run, qas: dict[int, Any], split: str) -> list[int]:
    cfg = run.cfg
    wanted = list(cfg.inspect.qa_ids)
    if wanted:
        unknown = [i for i in wanted if i not in qas]
        if unknown:
            raise VQAError(f"inspect.qa_ids not in split '{split}': {unknown[:20]}")
        return wanted
    per_question = run.eval_dir(split) / "per_question.jsonl"
    if per_question.is_file():  # pick a mix of correct and wrong answers from the last evaluation
        rows = [json.loads(line) for line in per_question.read_text().splitlines() if line.strip()]
        return pick([r for r in rows if r["qa_id"] in qas], cfg.inspect.n, cfg.seed)
    return random.Random(cfg.seed).sample(sorted(qas), min(cfg.inspect.n, len(qas)))


WRITTEN = 3  # the decoder's own answers drawn per question in the PNGs (the explorer shows eval.topk)


def predict_one(cfg: Any, image: Path, question: str, choices: Sequence[str]) -> dict[str, Any]:
    """Score ``choices`` (as typed: text, or boxes 'x,y,width,height' for a pointing run) for any image with the
    run's ``vqa.Predictor``, and draw its attention per choice."""
    run = as_run(cfg)
    predictor = Predictor.from_config(run)
    task = predictor.task
    asked = [task.parse_choice(c) for c in choices]
    r = predictor.predict(image, question, asked)
    boxes = task.drawn_boxes(asked)
    if boxes is not None:  # a box per choice, drawn on the image as the CNN saw it
        width, height = image_dimensions(image)
        boxes = [b.scaled(width, height, predictor.image_size) for b in boxes]
    png = render(predictor.pixels(image), question, "?", list(choices), r.scores.tolist(), r.attention, None,
                 title=f"{image.name} · {predictor.model.spec.variant} model from {run.cfg.eval.checkpoint}",
                 chosen=r.best, candidate_boxes=boxes, temperature=predictor.temperature)  # fmt: skip
    order = rank_order(list(choices), r.scores.tolist())  # no answer known: a tie goes to the first top choice
    ranked = [(choices[i], float(r.probabilities[i]), float(r.scores[i])) for i in order]
    if r.words is None:
        return {"ranked": ranked, "png": png, "generated": [], "words_png": None}
    generated = predictor.generate(image, question, k=WRITTEN)  # the decoder also answers with no choices
    rows = [(c, r.words[k], r.attention_words[k]) for k, c in enumerate(choices)] + written_rows(generated)
    words_png = render_words(predictor.pixels(image), question, rows, title="where the decoder looked at each word")
    return {"ranked": ranked, "png": png, "generated": generated, "words_png": words_png}


def question_png(run: Run, q: Any, scores: np.ndarray, attention: np.ndarray) -> tuple[bytes, int]:
    """One question's panels (file candidate order: scores [K], attention [K, H, W]) and the chosen candidate."""
    dataset, size = run.dataset, int(run.reader.manifest["image_size"])
    width, height = header_size(dataset.image_path(q.image_id))
    boxes = [b.scaled(width, height, size) for b in (run.grounding or {}).get(q.qa_id, [])]
    cand_boxes = run.task.choice_boxes(dataset, q)
    if cand_boxes is not None:  # each panel its own box; the answer's is framed green
        cand_boxes, boxes = [b.scaled(width, height, size) for b in cand_boxes], []
    chosen = choose(q.candidates, scores.tolist(), q.answer)  # the metrics' rule: a tie is wrong
    png = render(load_image(dataset.image_path(q.image_id), size), q.question, q.type, q.candidates, scores.tolist(),
                 attention, q.answer, boxes, chosen=chosen, candidate_boxes=cand_boxes,
                 title=f"qa_id {q.qa_id} · image_id {q.image_id} · {run.trained.model.spec.variant}",
                 temperature=temperature_of(run.trained.meta))  # fmt: skip
    return png, chosen


def written_rows(generated: Sequence[Generated]) -> list[tuple[str, list[str], np.ndarray]]:
    """``render_words`` rows of the decoder's own answers, labelled as written, with their probability."""
    return [(f"wrote: {g.answer} (p={g.probability:.2f})", g.words, g.attention_words) for g in generated]


def word_png(run: Run, q: Any, attention: np.ndarray, generated: Sequence[Generated]) -> bytes | None:
    """A decoder run's per-word figure of a question: each candidate (file order: attention [K, T, H, W]), then
    the answers it wrote itself; None for a run whose maps are glimpses."""
    model, _, _, tokenizer = run.trained
    if model.spec.head != "decoder":
        return None
    steps = [answer_steps(tokenizer, c, run.cfg.text.max_len) for c in q.candidates]
    size = int(run.reader.manifest["image_size"])
    rows = [(c, w, attention[k]) for k, (c, w) in enumerate(zip(q.candidates, steps, strict=True))]
    return render_words(load_image(run.dataset.image_path(q.image_id), size), q.question,
                        rows + written_rows(generated))  # fmt: skip


def write_reliability(out_dir: Path, calibration: dict[str, Any] | None, split: str) -> str:
    """The split's reliability diagram, before and after the temperature, as ``reliability.png``; the index's
    sentence about it ("" for a split without questions)."""
    if not calibration:
        return ""
    atomic_write_bytes(out_dir / "reliability.png", reliability_png(calibration, split))
    return (f" Calibration on the split: reliability.png (expected calibration error {calibration['ece_before']:.3f} "
            f"raw, {calibration['ece_after']:.3f} at temperature {calibration['temperature']:.2f}).")


def run_report(cfg: Any) -> dict[str, Any]:
    """Render the chosen questions of ``inspect.split`` with the ``eval.checkpoint`` model into <run.dir>/inspect/,
    and the explorer of the whole split beside them."""
    run = as_run(cfg)
    split, dataset = run.cfg.inspect.split, run.dataset
    model, meta, path, tokenizer = run.trained
    qas = {q.qa_id: q for q in dataset.split(split) if q.image_id in run.reader}
    ids = _choose(run, qas, split)
    table = qa_table(run.task, dataset, [qas[i] for i in ids], tokenizer, run.cfg.text.max_len)
    examples = QAExamples(table, run.reader, run.cfg.seed, train=False)
    items: list[dict[str, Any]] = []

    def write(tmp: str) -> None:  # every PNG and the index into a fresh folder, swapped in whole
        for start in range(0, len(examples), 32):
            batch = collate([examples[i] for i in range(start, min(start + 32, len(examples)))])
            with torch.inference_mode():
                scores, attention = model(**model_inputs(batch))  # [b, K], [b, K, G, H, W]
                written = (generate_with_maps(model, tokenizer, batch, WRITTEN, run.cfg.text.max_len)
                           if model.spec.head == "decoder" else [[]] * len(scores))  # fmt: skip
            for row in range(len(batch["qa_id"])):
                q = qas[int(batch["qa_id"][row])]
                order = batch["order"][row].numpy()  # position k holds file candidate order[k]
                png, chosen = question_png(run, q, to_file_order(scores[row].numpy(), order),
                                           to_file_order(attention[row].mean(1).numpy(), order))  # glimpses averaged
                name = f"qa_{q.qa_id}.png"
                atomic_write_bytes(Path(tmp) / name, png)
                words = word_png(run, q, to_file_order(attention[row].numpy(), order), written[row])
                if words:
                    atomic_write_bytes(Path(tmp) / f"qa_{q.qa_id}_words.png", words)
                reached(f"inspect:png{len(items) + 1}")
                items.append({"qa_id": q.qa_id, "type": q.type, "question": q.question, "answer": q.answer,
                              "candidates": list(q.candidates), "chosen": q.candidates[chosen], "png": name,
                              "words_png": f"qa_{q.qa_id}_words.png" if words else None,
                              "correct": q.candidates[chosen].lower() == q.answer.lower()})  # fmt: skip
        n_right = sum(it["correct"] for it in items)
        summary = (f"{len(items)} questions of split '{split}' ({n_right} answered correctly), model "
                   f"{model.spec.variant} from {path} (epoch {meta.get('epoch')}). Each panel: one candidate, its "
                   "attention over the image as the CNN saw it, its probability; green frame = true answer, "
                   "blue frame = chosen; dashed white = grounding box.")  # fmt: skip
        explorer.update(build_explorer(run, Path(tmp)))  # the interactive page: every question of the split
        summary += write_reliability(Path(tmp), explorer["calibration"], split)
        write_index(Path(tmp), items, f"{run.dir.name} / {split}", summary)

    explorer: dict[str, Any] = {}
    atomic_write_dir(run.report_dir, write)
    return {"index": run.report_dir / "index.html", "items": items, "explorer": run.report_dir / "explorer.html",
            "explored": explorer["n"]}  # fmt: skip
