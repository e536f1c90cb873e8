"""The attention explorer: a static page per run (``<run.dir>/inspect/explorer.html``) to browse every question of
a split, flip between the candidates' attention maps and glimpses, fade the overlay, and compare two runs.

Why static files and script-wrapped JSON: the page must work from ``file://`` with no server, and browsers refuse
``fetch()`` of local files there; a ``<script src>`` is allowed. So each data file is one JSON document passed to
a callback (``VQAExplorer.index({...})``, ``VQAExplorer.chunk(n, {...})``): the index (questions, candidates,
probabilities, boxes) loads first, the attention maps load per chunk of questions when one of them is shown, so a
split of thousands of questions opens at once. Every dataset string reaches the page through JSON and is inserted
as text (``textContent``), never as HTML; ``json.dumps`` escapes ``<``, ``>`` and ``&`` too, so a question holding
``</script>`` cannot end the data file's script.

Maps are stored as one byte per cell (``round(255 * a / max)``) plus the map's max, base64: a 14 x 14 x 2-glimpse
x 4-candidate question costs ~2 KB instead of ~10 KB of decimal floats, and the display (a colour map of the
relative weight) loses nothing visible.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
from collections.abc import Sequence
from importlib import resources
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..accel import make_accelerator
from ..common.errors import VQAError
from ..common.files import atomic_write_bytes, atomic_write_text
from ..config import load_config
from ..data.families import question_family
from ..data.words import answer_steps
from ..evaluation.calibration import calibration_summary, probabilities, temperature_of
from ..evaluation.evaluate import accuracy_of, run_label, split_pass, to_file_order
from ..evaluation.open_ended import generated_split
from ..evaluation.scoring import choose
from ..run import Run

CHUNK = 200  # questions per attention file: ~0.5 MB at Visual7W's 14 x 14 grid
THUMB = 640  # longest side of the explorer's copy of an image (the original aspect ratio is kept)
STATIC = ("explorer.html", "maps.js", "explorer.js", "explorer.css")  # the page, from vqa/report/explorer_static/


def encode_map(attention: np.ndarray) -> dict[str, Any]:
    """[H, W] weights -> {"max": float, "data": base64 of H*W bytes, round(255 * a / max), row-major}."""
    a = np.asarray(attention, dtype=np.float64)
    top = float(a.max()) if a.size else 0.0
    scaled = np.zeros(a.shape, np.uint8) if top <= 0 else np.clip(np.rint(a / top * 255), 0, 255).astype(np.uint8)
    return {"max": top, "data": base64.b64encode(scaled.tobytes()).decode("ascii")}


def decode_map(entry: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """The inverse of ``encode_map`` (to 1/255 of the map's max): what the page draws, for tests and tools."""
    raw = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.uint8).reshape(shape)
    return raw.astype(np.float32) / 255.0 * float(entry["max"])


def encode_question_maps(attention: np.ndarray) -> list[list[dict[str, Any]]]:
    """[K, G, H, W] one run's attention for one question -> [K][G] encoded maps."""
    return [[encode_map(glimpse) for glimpse in candidate] for candidate in attention]


def script(callback: str, *args: Any) -> str:
    """``VQAExplorer.<callback>(<json>, ...);``: a data file a ``<script src>`` can load from ``file://``.

    ``<``, ``>``, ``&`` and the two JavaScript line separators are written as ``\\u`` escapes (json.dumps with
    ensure_ascii leaves the first three as they are), so no dataset string can close a script or break a line."""
    body = ", ".join(json.dumps(a, ensure_ascii=True, separators=(",", ":")) for a in args)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        body = body.replace(ch, esc)
    return f"VQAExplorer.{callback}({body});\n"


def write_thumbnail(source: Path, dest: Path, longest: int = THUMB) -> tuple[int, int]:
    """A JPEG copy of ``source`` whose longest side is at most ``longest`` (aspect ratio kept); the original's
    (width, height), in which the boxes are given."""
    with Image.open(source) as img:
        size = img.size
        img = img.convert("RGB")
        img.thumbnail((longest, longest))

        buf = BytesIO()
        img.save(buf, format="JPEG", quality=88)
    atomic_write_bytes(dest, buf.getvalue())
    return size


def write_explorer(out_dir: Path, index: dict[str, Any], maps: dict[int, list[Any]], images: dict[int, Path],
                   chunk: int = CHUNK) -> Path:  # fmt: skip
    """Write the explorer into ``out_dir`` (the run's inspect folder): the page, ``explorer/index.js``,
    ``explorer/maps_NNN.js`` and ``explorer/img/<image_id>.jpg``.

    ``index``: {"title", "summary", "task", "grid": [H, W], "glimpses", "runs": [{"label", "variant",
    "checkpoint", "accuracy"}], "questions": [{"qa_id", "image_id", "type", "family", "question", "candidates",
    "answer_index", "grounding": [[x, y, w, h]], "candidate_boxes": [[x, y, w, h]] | None, "runs": [{"probs",
    "chosen", "correct"}]}]}; ``maps``: qa_id -> per run, ``encode_question_maps`` of its [K, G, H, W] attention;
    ``images``: image_id -> the original file. Boxes are in the original image's pixels, like the dataset's.
    Questions get "chunk", "image", "width" and "height" here.
    """
    data = out_dir / "explorer"
    sizes = {}
    for image_id, path in images.items():
        sizes[image_id] = write_thumbnail(path, data / "img" / f"{int(image_id)}.jpg")
    questions = index["questions"]
    for i, q in enumerate(questions):
        q["chunk"] = i // chunk
        q["image"] = f"explorer/img/{int(q['image_id'])}.jpg"
        q["width"], q["height"] = sizes[q["image_id"]]
    n_chunks = (len(questions) + chunk - 1) // chunk
    for c in range(n_chunks):
        part = {str(q["qa_id"]): maps[q["qa_id"]] for q in questions[c * chunk : (c + 1) * chunk]}
        atomic_write_text(data / f"maps_{c:03d}.js", script("chunk", c, part))
    atomic_write_text(data / "index.js", script("index", {**index, "chunks": n_chunks}))
    static = resources.files("vqa.report") / "explorer_static"
    for name in STATIC:
        target = out_dir / name if name.endswith(".html") else data / name
        with resources.as_file(static / name) as src:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
    return out_dir / "explorer.html"


def question_entry(qa: Any, family: str, grounding: Sequence[Sequence[float]],
                   candidate_boxes: Sequence[Sequence[float]] | None) -> dict[str, Any]:  # fmt: skip
    """A question's row of the index (without its runs' results): every string as the dataset has it."""
    answer = [i for i, c in enumerate(qa.candidates) if c.lower() == str(qa.answer).lower()]
    return {"qa_id": int(qa.qa_id), "image_id": int(qa.image_id), "type": qa.type, "family": family,
            "question": qa.question, "candidates": [str(c) for c in qa.candidates],
            "answer_index": answer[0] if answer else -1, "grounding": [list(map(float, b)) for b in grounding],
            "candidate_boxes": None if candidate_boxes is None else [list(map(float, b)) for b in candidate_boxes],
            "runs": []}  # fmt: skip


# ------------------------------------------------------------------------------------------------ from runs
EXPLORE_MAX = 5000  # questions in one explorer (a seeded sample of a larger split; the summary says so)


def run_results(run: Run, split: str) -> dict[str, Any]:
    """One run's scores and attention, in the file's candidate order, on every question of ``split``:
    {"label", "variant", "checkpoint", "accuracy", "grid", "by_id": qa_id -> (scores [K], attention [K, G, H, W]),
    "generated": qa_id -> a decoder's own answers, ``eval.topk`` beams as in ``make eval ARGS="eval.mode=open"``
    (``open_ended.Generated``; empty for a score head)}."""
    p = split_pass(run, make_accelerator(), split, "each")
    out = p.out
    by_id = {}
    for n, qa_id in enumerate(out["qa_id"].tolist()):
        order = out["order"][n]  # position k holds file candidate order[k]
        by_id[int(qa_id)] = (to_file_order(out["scores"][n], order), to_file_order(out["attention"][n], order))
    decoder = p.model.spec.head == "decoder"
    correct = accuracy_of(out)["correct"] if len(out["qa_id"]) else np.zeros(0, bool)
    label = np.argmax(out["order"] == 0, axis=1) if len(out["qa_id"]) else np.zeros(0, int)
    return {"calibration": calibration_summary(out["scores"], label, correct, temperature_of(p.meta))
            if len(correct) else None,  # the reliability diagram's bins, before and after the temperature
            "label": f"{run.dir.name} ({run_label(run.dir, p.model.spec.variant)})",
            "tokenizer": run.trained.tokenizer if decoder else None, "max_len": run.cfg.text.max_len,
            "generated": generated_split(run, split, run.cfg.eval.topk) if decoder else {},
            "variant": p.model.spec.variant, "checkpoint": str(p.path), "grid": list(p.model.spec.grid[1:]),
            "temperature": temperature_of(p.meta),
            "accuracy": accuracy_of(out)["accuracy"] if len(out["qa_id"]) else None, "by_id": by_id}  # fmt: skip


def compare_run(cfg: Any) -> Run:
    """``inspect.compare``'s run (from its own ``config.yaml``), checked to ask the same questions."""
    other = Path(cfg.inspect.compare)
    if not (other / "config.yaml").is_file():
        raise VQAError(f"inspect.compare={other}: no config.yaml there; give the folder of a trained run")
    ocfg = load_config(other / "config.yaml", [f"run.dir={other}", f"eval.checkpoint={cfg.eval.checkpoint}"])
    if (ocfg.data.task, Path(ocfg.data.annotations).resolve()) != (cfg.data.task, Path(cfg.data.annotations).resolve()):
        raise VQAError(f"inspect.compare={other} was trained on {ocfg.data.annotations} ({ocfg.data.task}), this run "
                       f"on {cfg.data.annotations} ({cfg.data.task}): the explorer compares runs on the same questions")
    return Run(ocfg)


def build_explorer(run: Run, out_dir: Path) -> dict[str, Any]:
    """Score ``inspect.split`` with this run (and ``inspect.compare``'s) and write the explorer into ``out_dir``."""
    cfg, dataset, task = run.cfg, run.dataset, run.task
    split = cfg.inspect.split
    runs = [run_results(r, split) for r in [run, *([compare_run(cfg)] if cfg.inspect.compare else [])]]
    ids = sorted(set.intersection(*(set(r["by_id"]) for r in runs)))
    sampled = len(ids) > EXPLORE_MAX
    if sampled:
        ids = sorted(random.Random(cfg.seed).sample(ids, EXPLORE_MAX))
    by_id = {q.qa_id: q for q in dataset.split(split)}
    grounding = run.grounding or {}
    questions, maps = [], {}
    for qa_id in ids:
        q = by_id[qa_id]
        boxes = task.choice_boxes(dataset, q)
        cand = None if boxes is None else [_xywh(b) for b in boxes]
        entry = question_entry(q, question_family(q.question), [_xywh(b) for b in grounding.get(qa_id, [])], cand)
        maps[qa_id] = []
        for r in runs:
            scores, attention = r["by_id"][qa_id]  # [K], [K, G, H, W]
            chosen = choose(q.candidates, scores.tolist(), q.answer)  # the metrics' tie rule
            probs = probabilities(scores, r["temperature"]).tolist()  # calibrated, as every page shows them
            entry["runs"].append({"probs": [round(p, 4) for p in probs], "chosen": chosen,
                                  "correct": q.candidates[chosen].lower() == str(q.answer).lower(),
                                  "words": step_words(r, q.candidates)})  # fmt: skip
            maps[qa_id].append(encode_question_maps(attention))
        add_generated(entry["runs"][0], maps[qa_id][0], runs[0]["generated"].get(qa_id, []), q.answer)
        questions.append(entry)
    n = len(questions)
    summary = (f"{n} questions of split '{split}'" + (f" (a seeded sample of {len(by_id)})" if sampled else "")
               + "; " + "; ".join(f"{r['label']}: accuracy {r['accuracy']:.3f} on the split" for r in runs
                                  if r["accuracy"] is not None))  # fmt: skip
    index = {"title": f"{run.dir.name} / {split}", "summary": summary, "task": task.name,
             "grid": runs[0]["grid"], "glimpses": max((len(c) for m in maps.values() for r in m for c in r), default=0),
             "runs": [{k: r[k] for k in ("label", "variant", "checkpoint", "accuracy", "grid")} for r in runs],
             "questions": questions}  # fmt: skip
    images = {q["image_id"]: dataset.image_path(q["image_id"]) for q in questions}
    return {"page": write_explorer(out_dir, index, maps, images), "n": n, "calibration": runs[0]["calibration"]}


def step_words(results: dict[str, Any], candidates: Sequence[str]) -> list[list[str]] | None:
    """A decoder run's steps of each candidate (its words, the end): what its maps are; None for glimpses."""
    tok = results["tokenizer"]
    return None if tok is None else [answer_steps(tok, c, results["max_len"]) for c in candidates]


def add_generated(result: dict[str, Any], maps: list[Any], generated: Sequence[Any], answer: str) -> None:
    """The decoder's own answers after the candidates: ``result["generated"]`` [{"answer", "p", "correct"}], their
    steps appended to ``result["words"]`` and their maps (one per step, no padding) to ``maps``; the page shows
    them as candidates K, K+1, ... of the first run."""
    if not generated:
        return
    result["generated"] = [{"answer": g.answer, "p": round(g.probability, 4),
                            "correct": g.answer.lower() == str(answer).lower()} for g in generated]  # fmt: skip
    result["words"] += [g.words for g in generated]
    maps += [[encode_map(m) for m in g.attention_words] for g in generated]


def _xywh(box: Any) -> list[float]:
    return [float(box.x), float(box.y), float(box.width), float(box.height)]
