"""Attention maps you can look at: one PNG per question (one overlay per candidate), a static HTML index, and the
interactive explorer of the whole split (``vqa.explorer``).

The overlay is drawn on the image *as the CNN saw it* (squash-resized to S x S), so grid cell (i, j) of an H x W
attention map covers exactly pixels ``[j*S/W, (j+1)*S/W) x [i*S/H, (i+1)*S/H)``; grounding boxes are mapped the same
way. Every dataset string that reaches the HTML page is escaped. "Chosen" (blue frame, ✓/✗ in the title, the
index's result) is ``scoring.choose``: the same tie rule as the metrics, so a tie is drawn and listed as wrong.
"""

from __future__ import annotations

import html
import json
import random
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import Box
from .errors import VQAError
from .io import atomic_write_bytes, atomic_write_text, figure_png, reached
from .scoring import choose, rank_order


def upsample(attention: np.ndarray, size: int) -> np.ndarray:
    """[H, W] cell weights -> [size, size] pixels, each cell a constant block (what the model actually weighs)."""
    h, w = attention.shape
    rows = np.minimum((np.arange(size) * h) // size, h - 1)
    cols = np.minimum((np.arange(size) * w) // size, w - 1)
    return attention[rows][:, cols]


def scale_box(box: Box, width: int, height: int, size: int) -> tuple[float, float, float, float]:
    """A box in original pixels -> (x, y, w, h) on the size x size squash-resized image."""
    sx, sy = size / width, size / height
    return box.x * sx, box.y * sy, box.width * sx, box.height * sy


def verdict(candidates: Sequence[str], chosen: int, answer: str | None) -> str:
    """The title's result: ✓ correct / ✗ wrong for the chosen candidate, nothing when the answer is unknown."""
    if answer is None:
        return ""
    return "  ✓ correct" if candidates[chosen].lower() == answer.lower() else "  ✗ wrong"


def panel_marks(candidates: Sequence[str], chosen: int, answer: str | None) -> list[tuple[str, str | None]]:
    """(marks, frame colour) per panel: the true answer framed green, the chosen one blue (green wins when they
    are the same candidate); a pure function so the tie rule of the picture is testable without reading pixels."""
    out = []
    for j, c in enumerate(candidates):
        is_true = answer is not None and c.lower() == answer.lower()
        marks = ("▶ chosen  " if j == chosen else "") + ("✓ answer" if is_true else "")
        out.append((marks, "tab:green" if is_true else ("tab:blue" if j == chosen else None)))
    return out


def render(pixels: np.ndarray, question: str, qtype: str, candidates: Sequence[str], scores: Sequence[float],
           attention: np.ndarray, answer: str | None, boxes: Sequence[tuple[float, float, float, float]] = (),
           title: str = "", chosen: int | None = None,
           candidate_boxes: Sequence[tuple[float, float, float, float]] | None = None) -> bytes:  # fmt: skip
    """PNG bytes: the image once per candidate with its attention overlay, score and probability.

    ``pixels`` [S, S, 3] uint8 as fed to the CNN; ``attention`` [K, H, W] (glimpses already averaged); the chosen
    candidate (``chosen``, by default ``scoring.choose``: on a top tie a wrong one) is framed blue, the true answer
    (when known) green; ✓/✗ says whether they agree, exactly as the metrics count it. Pointing: each panel also
    draws its own candidate's box (``candidate_boxes``, on the S x S image; solid orange).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    size = pixels.shape[0]
    probs = torch.softmax(torch.tensor(scores, dtype=torch.float32), 0).numpy()
    if chosen is None:
        chosen = choose(candidates, scores, answer)
    marks = panel_marks(candidates, chosen, answer)
    k = len(candidates)
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 4.6))
    for j, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(pixels)
        ax.imshow(upsample(attention[j], size), cmap="jet", alpha=0.45, vmin=0, vmax=max(attention[j].max(), 1e-9))
        for x, y, w, h in boxes:
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="white", linewidth=1.5, linestyle="--"))
        if candidate_boxes is not None:
            ax.add_patch(Rectangle(candidate_boxes[j][:2], *candidate_boxes[j][2:], fill=False, edgecolor="orange",
                                   linewidth=2.5))  # fmt: skip
        label = "\n".join(textwrap.wrap(candidates[j] if candidate_boxes is None else f"box {candidates[j]}", 28)[:2])
        ax.set_title(f"{label}\np={probs[j]:.2f}  score={scores[j]:.2f}\n{marks[j][0]}", fontsize=9)
        color = marks[j][1]
        for spine in ax.spines.values():
            spine.set_visible(color is not None)
            if color:
                spine.set_edgecolor(color)
                spine.set_linewidth(4)
        ax.set_xticks([])
        ax.set_yticks([])
    result = verdict(candidates, chosen, answer)
    fig.suptitle("\n".join(textwrap.wrap(f"[{qtype}] {question}{result}", 110)) + (f"\n{title}" if title else ""),
                 fontsize=11)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    return figure_png(fig, dpi=80)


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


INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Attention maps: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
.card {{ border: 1px solid #ccc; border-radius: 6px; margin: 1em 0; padding: .6em; }}
.card.wrong {{ border-left: 6px solid #d33; }} .card.correct {{ border-left: 6px solid #3a3; }}
.card img {{ max-width: 100%; }} .meta {{ color: #555; font-size: 90%; }}
</style></head><body>
<h1>Attention maps: {title}</h1>
<p>{summary}</p>
<p><a href="explorer.html">Open the attention explorer</a>: every question of the split, each candidate's
and glimpse's map over the full image, filters, keyboard, and a second run beside this one
(<code>inspect.compare</code>).</p>
<p>Type <select id="type"><option value="">all</option>{type_options}</select>
Result <select id="result"><option value="">all</option><option value="correct">correct</option>
<option value="wrong">wrong</option></select> <span id="count"></span></p>
{cards}
<script>
function applyFilters() {{
  const t = document.getElementById("type").value, r = document.getElementById("result").value;
  let shown = 0;
  for (const card of document.querySelectorAll(".card")) {{
    const ok = (!t || card.dataset.type === t) && (!r || card.dataset.result === r);
    card.style.display = ok ? "" : "none";
    if (ok) shown += 1;
  }}
  document.getElementById("count").textContent = shown + " shown";
}}
document.getElementById("type").addEventListener("change", applyFilters);
document.getElementById("result").addEventListener("change", applyFilters);
applyFilters();
</script>
</body></html>
"""


def write_index(out_dir: Path, items: Sequence[dict[str, Any]], title: str, summary: str) -> Path:
    """index.html listing every PNG with its question, type and result; all dataset text escaped."""
    e = html.escape
    cards = []
    for it in items:
        result = "correct" if it["correct"] else "wrong"
        cands = "".join(f"<li>{e(c)}{' ✓' if c.lower() == it['answer'].lower() else ''}"
                        f"{' ◀ chosen' if c == it['chosen'] else ''}</li>" for c in it["candidates"])  # fmt: skip
        cards.append(
            f'<div class="card {result}" data-type="{e(it["type"])}" data-result="{result}">'
            f'<div><b>{e(it["question"])}</b> <span class="meta">qa_id {int(it["qa_id"])} · {e(it["type"])} · '
            f"{result}</span></div><ul>{cands}</ul>"
            f'<img src="{e(it["png"])}" alt="attention maps for qa_id {int(it["qa_id"])}" loading="lazy"></div>'
        )
    types = sorted({it["type"] for it in items})
    page = INDEX.format(title=e(title), summary=e(summary), cards="\n".join(cards),
                        type_options="".join(f'<option value="{e(t)}">{e(t)}</option>' for t in types))  # fmt: skip
    atomic_write_text(out_dir / "index.json", json.dumps(list(items), indent=1))
    return atomic_write_text(out_dir / "index.html", page)


# ------------------------------------------------------------------------------------------------ the stage
def _choose(cfg: Any, qas: dict[int, Any], run: Path, split: str) -> list[int]:
    wanted = list(cfg.inspect.qa_ids)
    if wanted:
        unknown = [i for i in wanted if i not in qas]
        if unknown:
            raise VQAError(f"inspect.qa_ids not in split '{split}': {unknown[:20]}")
        return wanted
    per_question = run / "eval" / split / "per_question.jsonl"
    if per_question.is_file():  # pick a mix of correct and wrong answers from the last evaluation
        rows = [json.loads(line) for line in per_question.read_text().splitlines() if line.strip()]
        return pick([r for r in rows if r["qa_id"] in qas], cfg.inspect.n, cfg.seed)
    return random.Random(cfg.seed).sample(sorted(qas), min(cfg.inspect.n, len(qas)))


def predict_one(cfg: Any, image: Path, question: str, choices: Sequence[str]) -> dict[str, Any]:
    """Score ``choices`` for any image with the run's ``vqa.Predictor``, and draw its attention per choice."""
    from .predictor import Predictor

    predictor = Predictor.from_config(cfg)
    boxes = None
    if predictor.model.spec.task == "pointing":  # "x,y,width,height" per choice, in the image's pixels
        from .predictor import image_dimensions

        asked = [tuple(float(v) for v in _numbers(c)) for c in choices]
        width, height = image_dimensions(image)
        boxes = [scale_box(Box(0, "", *b), width, height, predictor.image_size) for b in asked]  # on the S x S image
        r = predictor.predict(image, question, asked)
    else:
        r = predictor.predict(image, question, choices)
    png = render(predictor.pixels(image), question, "?", list(choices), r.scores.tolist(), r.attention, None,
                 title=f"{image.name} · {predictor.model.spec.variant} model from {cfg.eval.checkpoint}",
                 chosen=r.best, candidate_boxes=boxes)  # fmt: skip
    order = rank_order(list(choices), r.scores.tolist())  # no answer known: a tie goes to the first top choice
    ranked = [(choices[i], float(r.probabilities[i]), float(r.scores[i])) for i in order]
    return {"ranked": ranked, "png": png}


def _numbers(choice: str) -> list[float]:
    """'10,20,50,40' -> [10, 20, 50, 40] (a pointing choice on the command line)."""
    try:
        values = [float(v) for v in choice.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise VQAError(f"a pointing run's choices are boxes 'x,y,width,height' in pixels, got {choice!r}")
    return values


def run_inspect(cfg: Any) -> dict[str, Any]:
    """Render the chosen questions of ``inspect.split`` with the ``eval.checkpoint`` model into <run.dir>/inspect/."""
    from .checkpoint import load_trained
    from .data import dataset_from_config
    from .evaluate import to_file_order
    from .explorer import build_explorer
    from .features import FeatureReader, features_dir
    from .grounding import grounding_boxes, image_size
    from .images import load_image
    from .io import atomic_write_dir
    from .loader import QAExamples, collate, model_inputs
    from .text import qa_table

    run, split = Path(cfg.run.dir), cfg.inspect.split
    model, meta, path, tokenizer = load_trained(cfg)
    reader = FeatureReader(features_dir(cfg))
    size = int(reader.manifest["image_size"])
    dataset = dataset_from_config(cfg)
    qas = {q.qa_id: q for q in dataset.split(split) if q.image_id in reader}
    ids = _choose(cfg, qas, run, split)
    grounding = grounding_boxes(cfg, dataset) or {}
    examples = QAExamples(qa_table(dataset, [qas[i] for i in ids], tokenizer, cfg.text.max_len),
                          reader, cfg.seed, train=False)  # fmt: skip
    out_dir = run / "inspect"
    items: list[dict[str, Any]] = []

    def write(tmp: str) -> None:  # every PNG and the index into a fresh folder, swapped in whole
        for start in range(0, len(examples), 32):
            batch = collate([examples[i] for i in range(start, min(start + 32, len(examples)))])
            with torch.inference_mode():
                scores, attention = model(**model_inputs(batch))  # [b, K], [b, K, G, H, W]
            for row in range(len(batch["qa_id"])):
                q = qas[int(batch["qa_id"][row])]
                order = batch["order"][row].numpy()  # position k holds file candidate order[k]
                file_scores = to_file_order(scores[row].numpy(), order)
                file_att = to_file_order(attention[row].mean(1).numpy(), order)  # [K, H, W], glimpses averaged
                width, height = image_size(dataset.image_path(q.image_id))
                boxes = [scale_box(b, width, height, size) for b in grounding.get(q.qa_id, [])]
                cand_boxes = None
                if dataset.regions is not None:  # pointing: each panel its own box; the answer's is framed green
                    cand_boxes = [scale_box(dataset.regions[int(c)], width, height, size) for c in q.candidates]
                    boxes = []
                pixels = load_image(dataset.image_path(q.image_id), size)
                chosen = choose(q.candidates, file_scores.tolist(), q.answer)  # the metrics' rule: a tie is wrong
                png = render(pixels, q.question, q.type, q.candidates, file_scores.tolist(), file_att, q.answer, boxes,
                             title=f"qa_id {q.qa_id} · image_id {q.image_id} · {model.spec.variant}",
                             chosen=chosen, candidate_boxes=cand_boxes)  # fmt: skip
                name = f"qa_{q.qa_id}.png"
                atomic_write_bytes(Path(tmp) / name, png)
                reached(f"inspect:png{len(items) + 1}")
                items.append({"qa_id": q.qa_id, "type": q.type, "question": q.question, "answer": q.answer,
                              "candidates": list(q.candidates), "chosen": q.candidates[chosen], "png": name,
                              "correct": q.candidates[chosen].lower() == q.answer.lower()})  # fmt: skip
        n_right = sum(it["correct"] for it in items)
        summary = (f"{len(items)} questions of split '{split}' ({n_right} answered correctly), model "
                   f"{model.spec.variant} from {path} (epoch {meta.get('epoch')}). Each panel: one candidate, its "
                   "attention over the image as the CNN saw it, its probability; green frame = true answer, "
                   "blue frame = chosen; dashed white = grounding box.")  # fmt: skip
        write_index(Path(tmp), items, f"{run.name} / {split}", summary)
        explorer.update(build_explorer(cfg, Path(tmp), dataset))  # the interactive page: every question of the split

    explorer: dict[str, Any] = {}
    atomic_write_dir(out_dir, write)
    return {"index": out_dir / "index.html", "items": items, "explorer": out_dir / "explorer.html",
            "explored": explorer["n"]}  # fmt: skip
