"""Drawing attention for people: one PNG per question (the image once per candidate, its attention overlaid) and
the static HTML index of a report.

The overlay is drawn on the image *as the CNN saw it* (squash-resized to S x S), so grid cell (i, j) of an H x W
attention map covers exactly pixels ``[j*S/W, (j+1)*S/W) x [i*S/H, (i+1)*S/H)``; grounding boxes are mapped the same
way. Every dataset string that reaches the HTML page is escaped. "Chosen" (blue frame, ✓/✗ in the title, the
index's result) is ``scoring.choose``: the same tie rule as the metrics, so a tie is drawn and listed as wrong.
"""

from __future__ import annotations

import html
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a training machine

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from ..common.files import atomic_write_text, figure_png
from ..evaluation.calibration import probabilities


def upsample(attention: np.ndarray, size: int) -> np.ndarray:
    """[H, W] cell weights -> [size, size] pixels, each cell a constant block (what the model actually weighs)."""
    h, w = attention.shape
    rows = np.minimum((np.arange(size) * h) // size, h - 1)
    cols = np.minimum((np.arange(size) * w) // size, w - 1)
    return attention[rows][:, cols]


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
           title: str = "", chosen: int = 0,
           candidate_boxes: Sequence[tuple[float, float, float, float]] | None = None,
           temperature: float = 1.0) -> bytes:  # fmt: skip
    """PNG bytes: the image once per candidate with its attention overlay, score and probability.

    ``pixels`` [S, S, 3] uint8 as fed to the CNN; ``attention`` [K, H, W] (glimpses already averaged); the chosen
    candidate (``chosen``: the caller's ``scoring.choose``, on a top tie a wrong one) is framed blue, the true answer
    (when known) green; ✓/✗ says whether they agree, exactly as the metrics count it. Pointing: each panel also
    draws its own candidate's box (``candidate_boxes``, on the S x S image; solid orange). The probabilities are
    softmax(scores / ``temperature``), the run's calibrated ones.
    """
    size = pixels.shape[0]
    probs = probabilities(scores, temperature)
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


def render_words(pixels: np.ndarray, question: str, rows: Sequence[tuple[str, Sequence[str], np.ndarray]],
                 title: str = "") -> bytes:  # fmt: skip
    """PNG bytes, the Show, Attend and Tell figure: one row per answer (``rows``: its label, its steps — the words,
    then the end — and their maps [T, H, W]), the image once per step with where the decoder looked to write it."""
    size, cols = pixels.shape[0], max(len(words) for _, words, _ in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols, 2.5 * len(rows)), squeeze=False)
    for (label, words, maps), line in zip(rows, axes, strict=True):
        for t, ax in enumerate(line):
            ax.set_axis_off()
            if t < len(words):
                ax.imshow(pixels)
                ax.imshow(upsample(maps[t], size), cmap="jet", alpha=0.45, vmin=0, vmax=max(maps[t].max(), 1e-9))
                ax.set_title(f"\u201c{words[t]}\u201d", fontsize=9)
        line[0].text(-0.08, 0.5, "\n".join(textwrap.wrap(label, 16)[:3]), transform=line[0].transAxes,
                     ha="right", va="center", fontsize=9)  # fmt: skip
    fig.suptitle("\n".join(textwrap.wrap(question, 100)) + (f"\n{title}" if title else ""), fontsize=10)
    fig.tight_layout(rect=(0.08, 0, 1, 1 - 0.8 / (2.5 * len(rows))))  # ~0.8 inch for the title, any height
    return figure_png(fig, dpi=72)

def reliability_png(calibration: dict[str, Any], split: str) -> bytes:
    """PNG bytes: the reliability diagram of a split, accuracy against confidence per bin, before (raw scores) and
    after the fitted temperature; a calibrated model sits on the diagonal (``calibration.py``)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for key, label, color in (("before", "raw scores", "tab:red"), ("after", "temperature", "tab:blue")):
        bins = [b for b in calibration[f"bins_{key}"] if b["n"]]
        value = calibration["temperature"] if key == "after" else 1.0
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color=color,
                label=f"{label} (T = {value:.2f}): ECE {calibration[f'ece_{key}']:.3f}")  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the chosen answer")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability on split '{split}'", fontsize=11)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return figure_png(fig, dpi=80)



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
            f'<img src="{e(it["png"])}" alt="attention maps for qa_id {int(it["qa_id"])}" loading="lazy">'
            + (f'<img src="{e(it["words_png"])}" alt="attention per word for qa_id {int(it["qa_id"])}" '
               'loading="lazy">' if it.get("words_png") else "") + "</div>"
        )
    types = sorted({it["type"] for it in items})
    page = INDEX.format(title=e(title), summary=e(summary), cards="\n".join(cards),
                        type_options="".join(f'<option value="{e(t)}">{e(t)}</option>' for t in types))  # fmt: skip
    atomic_write_text(out_dir / "index.json", json.dumps(list(items), indent=1))
    return atomic_write_text(out_dir / "index.html", page)
