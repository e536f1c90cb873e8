"""Attention maps: cell-to-pixel mapping, the HTML report (escaped), the inspect stage and predict.py."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from conftest import REPO
from PIL import Image

import vqa.checkpoint
import vqa.data.tasks.telling
import vqa.evaluation.evaluate
import vqa.report.inspect
import vqa.report.panels
import vqa.run
from vqa.checkpoint import Trained
from vqa.common.errors import VQAError
from vqa.config import load_config
from vqa.data.boxes import Box
from vqa.data.tasks.telling import load_telling
from vqa.evaluation.evaluate import accuracy_of, evaluate
from vqa.evaluation.scoring import choose, rank_candidates
from vqa.report.inspect import pick, run_report
from vqa.report.panels import panel_marks, render, upsample, verdict, write_index


def test_a_one_hot_cell_lands_on_its_pixels() -> None:
    att = np.zeros((7, 7))
    att[2, 5] = 1.0
    big = upsample(att, 224)  # the image as fed to the CNN: 224 x 224
    ys, xs = np.nonzero(big)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (64, 96, 160, 192)  # rows 2*32.., cols 5*32..
    assert upsample(np.eye(3), 10).shape == (10, 10)


def test_boxes_follow_the_squash_resize() -> None:
    box = Box(1, "x", 100, 50, 200, 100)
    assert box.scaled(400, 200, 224) == pytest.approx((56, 56, 112, 112))


TAB_BLUE, TAB_GREEN = (31, 119, 180), (44, 160, 44)  # matplotlib's tab:blue / tab:green: the index's legend


def frames(png: bytes, k: int, rgb: tuple[int, int, int]) -> list[int]:
    """Pixels of colour ``rgb`` (antialiasing tolerance) in each of the ``k`` side-by-side panels of a rendered PNG."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)  # [H, W, 3]
    hit = np.abs(image - np.array(rgb)).max(axis=-1) <= 30  # [H, W]
    width = image.shape[1]
    return [int(hit[:, j * width // k : (j + 1) * width // k].sum()) for j in range(k)]


@pytest.mark.parametrize(
    ("scores", "answer", "blue", "green", "result"),
    [
        ([2, 2, 0, 0], "A.", 1, 0, "✗ wrong"),  # a top tie with the answer counts wrong: a wrong one is chosen
        ([3, 1, 1, 0], "A.", None, 0, "✓ correct"),  # chosen = answer: one frame, green wins
        ([1, 2, 3, 0], "A.", 2, 0, "✗ wrong"),
        ([0, 5, 5, 1], None, 1, None, ""),  # predict.py: no answer known, the first top choice, no verdict
    ],
    ids=["tie-is-wrong", "right", "wrong", "no-answer"],
)  # fmt: skip
def test_render_frames_the_chosen_and_the_true_answer(
    monkeypatch: pytest.MonkeyPatch,
    scores: list[float],
    answer: str | None,
    blue: int | None,
    green: int | None,
    result: str,
) -> None:
    """What a user reads off a PNG: the blue frame is the model's choice under the metrics' tie rule, the green frame
    the true answer, and the title says whether they agree, exactly as the accuracy counts it (on a tie, wrong)."""
    titles: list[str] = []
    chosen_marks: list[list[int]] = []
    real = vqa.report.panels.figure_png

    def spy(fig, **kwargs) -> bytes:
        titles.append(fig.get_suptitle())
        chosen_marks.append([j for j, ax in enumerate(fig.axes) if "▶ chosen" in ax.get_title()])
        return real(fig, **kwargs)

    monkeypatch.setattr(vqa.report.panels, "figure_png", spy)
    att = np.zeros((4, 2, 2))
    att[:, 0, 1] = 1.0  # the jet overlay (dark blue/red over black) stays far from both frame colours
    cands = ["A.", "B.", "C.", "D."]
    png = render(np.zeros((16, 16, 3), np.uint8), "Where is it?", "where", cands, scores, att, answer,
                 [(1, 1, 10, 10)], chosen=choose(cands, scores, answer))  # the stage's choice: the metrics' tie rule
    for rgb, framed in ((TAB_BLUE, blue), (TAB_GREEN, green)):
        counts = frames(png, 4, rgb)
        assert all(n > 1000 if j == framed else n < 50 for j, n in enumerate(counts)), (rgb, counts)
    assert titles == [f"[where] Where is it?{'  ' + result if result else ''}"]
    assert chosen_marks == [[green if blue is None else blue]], "the '▶ chosen' caption sits on the framed choice"


def test_html_escapes_every_dataset_string(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script>'
    items = [{"qa_id": 1, "type": "what", "question": f"What is {evil}?", "answer": f"A {evil}.",
              "candidates": [f"A {evil}.", "B.", "C.", "D."], "chosen": "B.", "png": 'qa_1.png" onerror="x',
              "correct": False}]  # fmt: skip
    page = write_index(tmp_path, items, title=evil, summary=evil).read_text()
    assert evil not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert 'onerror="x' not in page
    assert page.count("<script>") == 1, "only the page's own filter script"


def test_pick_mixes_types_and_results() -> None:
    rows = [{"qa_id": i, "type": t, "correct": i % 5 != 0} for i, t in enumerate(["what", "where", "how"] * 20)]
    chosen = pick(rows, 6, seed=0)
    types = {r["type"] for r in rows if r["qa_id"] in chosen}
    results = {r["correct"] for r in rows if r["qa_id"] in chosen}
    assert len(chosen) == 6 and types == {"what", "where", "how"} and results == {True, False}


@pytest.mark.slow
def test_inspect_stage_writes_pngs_and_index(trained_run) -> None:
    cfg = load_config(None, [*trained_run, "inspect.n=3"])
    out = run_report(cfg)
    run = Path(cfg.run.dir) / "inspect"
    assert len(out["items"]) == 3 and len(list(run.glob("qa_*.png"))) == 3
    page = (run / "index.html").read_text()
    assert all(f'src="{it["png"]}"' in page for it in out["items"])
    ds = load_telling(cfg.data.annotations, cfg.data.images)
    test_ids = [q.qa_id for q in ds.split("test")][:2]
    out = run_report(load_config(None, [*trained_run, f"inspect.qa_ids={test_ids}"]))
    assert [it["qa_id"] for it in out["items"]] == test_ids
    assert len(list(run.glob("qa_*.png"))) == 2, "stale PNGs of the previous report are removed"
    with pytest.raises(VQAError, match=r"inspect\.qa_ids not in split 'test': \[999999\]"):
        run_report(load_config(None, [*trained_run, "inspect.qa_ids=[999999]"]))
    assert json.loads((run / "index.json").read_text())[0]["qa_id"] == test_ids[0]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["png", "grayscale-jpeg"])
def test_predict_on_any_image(trained_run, tmp_path: Path, kind: str) -> None:
    cfg = load_config(None, trained_run)
    src = Image.open(load_telling(cfg.data.annotations, cfg.data.images).image_path(1))
    image = tmp_path / ("photo.png" if kind == "png" else "photo.jpg")
    (src.convert("RGBA") if kind == "png" else src.convert("L")).save(image)
    p = subprocess.run([sys.executable, "pipelines/predict.py", *trained_run, "--image", str(image),
                        "--question", "Where is the window?", "--choices", "On the left.", "On the right.",
                        "At the top.", "In the middle.", "--out", str(tmp_path / "overlay.png")],
                       cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln[:2] in ("1.", "2.", "3.", "4.")]
    assert len(lines) == 4 and abs(sum(float(ln.split("p=")[1].split()[0]) for ln in lines) - 1) < 0.01
    assert Image.open(tmp_path / "overlay.png").format == "PNG"


@pytest.mark.slow
def test_predict_reports_a_bad_image_cleanly(trained_run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    p = subprocess.run([sys.executable, "pipelines/predict.py", *trained_run, "--image", str(bad), "--question", "Q?",
                        "--choices", "A.", "B."], cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr and "not an image" in p.stderr


def test_the_picture_follows_the_tie_rule() -> None:
    cands, answer = ["A.", "B.", "C.", "D."], "A."
    tied = choose(cands, [1.0, 1.0, 1.0, 1.0], answer)
    assert tied != 0 and verdict(cands, tied, answer) == "  ✗ wrong"
    marks = panel_marks(cands, tied, answer)
    assert marks[0] == ("✓ answer", "tab:green") and marks[tied] == ("▶ chosen  ", "tab:blue"), "blue = chosen"
    right = choose(cands, [2.0, 1.0, 1.0, 1.0], answer)
    assert right == 0 and verdict(cands, right, answer) == "  ✓ correct"
    assert panel_marks(cands, right, answer)[0] == ("▶ chosen  ✓ answer", "tab:green")
    assert verdict(cands, 0, None) == "", "no answer known (predict.py): no verdict"


class Tied(torch.nn.Module):
    """A trained model whose scores are all equal: every question is a 4-way tie at the top."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.spec = inner, inner.spec

    def forward(self, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        scores, attention = self.inner(*args, **kwargs)  # [B, K], [B, K, G, H, W]
        return torch.zeros_like(scores), attention


def test_eval_metrics_and_inspect_agree_on_a_tie(trained_run, tmp_path, monkeypatch) -> None:
    """All four scores equal: accuracy_of, rank_candidates/choose, the eval stage and the inspect report all say
    wrong, and the PNG frames a wrong candidate as chosen."""
    src = Path(next(o for o in trained_run if o.startswith("run.dir=")).split("=", 1)[1])
    shutil.copytree(src, tmp_path / "run")  # the session's shared run stays untouched
    overrides = [o for o in trained_run if not o.startswith("run.dir=")] + [f"run.dir={tmp_path / 'run'}"]
    real = vqa.checkpoint.load_trained

    def tied(*args):
        model, meta, path, tokenizer = real(*args)
        return Trained(Tied(model), meta, path, tokenizer)

    monkeypatch.setattr(vqa.run, "load_trained", tied)  # every stage loads the model through its Run
    drawn: dict[str, int] = {}
    real_render = vqa.report.inspect.render

    def spy(pixels, question, *args, chosen=None, **kwargs) -> bytes:
        drawn[question] = chosen
        return real_render(pixels, question, *args, chosen=chosen, **kwargs)

    monkeypatch.setattr(vqa.report.inspect, "render", spy)

    metrics = evaluate(load_config(None, [*overrides, "eval.split=test"]), Accelerator(cpu=True))
    assert metrics["accuracy"] == 0.0 and set(metrics["per_question_type"].values()) == {0.0}
    out = run_report(load_config(None, [*overrides, "inspect.n=4"]))
    assert len(out["items"]) == 4
    for it in out["items"]:
        assert it["correct"] is False and it["chosen"] != it["answer"]
        assert it["candidates"][drawn[it["question"]]] == it["chosen"], "the PNG frames what the index lists"
        assert rank_candidates(it["candidates"], [0.0] * 4, it["answer"])[0] == it["chosen"]
    order = np.tile(np.arange(4), (5, 1))  # [5, 4]: the answer in slot 0
    assert accuracy_of({"scores": np.zeros((5, 4)), "order": order, "type": np.zeros(5, dtype=int)})["accuracy"] == 0


def read_script(path: Path) -> list:
    """The JSON arguments of an explorer data file: ``VQAExplorer.<name>(<json>, ...);``."""
    text = path.read_text()
    assert text.startswith("VQAExplorer.") and text.rstrip().endswith(");")
    return json.loads("[" + text[text.index("(") + 1 : text.rstrip().rindex(")")] + "]")


@pytest.mark.slow
def test_inspect_writes_the_explorer_of_the_whole_split(trained_run, tmp_path) -> None:
    """explorer.html + data files for every test question; the stored maps are the model's (to 1/255 of each map's
    max), the probabilities and the chosen candidate follow the metrics; a compare run adds its own results."""
    from vqa.config import save_config
    from vqa.report.explorer import decode_map

    save_config(load_config(None, trained_run))  # <run.dir>/config.yaml, as every stage's entry point writes it
    cfg = load_config(None, [*trained_run, "inspect.n=2", f"inspect.compare={load_config(None, trained_run).run.dir}"])
    evaluate(load_config(None, [*trained_run, "eval.split=test"]), Accelerator(cpu=True))
    out = run_report(cfg)
    root = Path(cfg.run.dir) / "inspect"
    assert out["explorer"] == root / "explorer.html" and (root / "explorer" / "explorer.js").is_file()
    (index,) = read_script(root / "explorer" / "index.js")
    test_ids = sorted(q.qa_id for q in load_telling(cfg.data.annotations, cfg.data.images).split("test"))
    assert [q["qa_id"] for q in index["questions"]] == test_ids == sorted(test_ids) and out["explored"] == len(test_ids)
    assert len(index["runs"]) == 2 and index["grid"] == [3, 3]
    q = index["questions"][0]
    assert (root / q["image"]).is_file() and q["width"] > 0 and 0 <= q["answer_index"] < 4
    assert q["runs"][0] == q["runs"][1], "the same run compared with itself"
    chunk, maps = read_script(root / "explorer" / f"maps_{q['chunk']:03d}.js")
    assert chunk == q["chunk"]
    cand = maps[str(q["qa_id"])][0]  # run 0: [K][G] maps
    assert len(cand) == 4 and len(cand[0]) == index["glimpses"]
    grid = [[decode_map(m, (3, 3)) for m in c] for c in cand]  # [K][G] -> [3, 3]
    assert all(abs(float(g.sum()) - 1) < 0.05 for c in grid for g in c), "each glimpse is a softmax over the cells"
    rows = (Path(cfg.run.dir) / "eval" / "test" / "per_question.jsonl").read_text().splitlines()
    chosen = {r["qa_id"]: r["chosen"] for r in map(json.loads, rows)}
    assert {e["qa_id"]: e["candidates"][e["runs"][0]["chosen"]] for e in index["questions"]} == chosen
    with pytest.raises(VQAError, match=r"inspect\.compare=.*no config\.yaml there"):
        run_report(load_config(None, [*trained_run, f"inspect.compare={tmp_path}"]))


def test_explorer_data_cannot_end_its_script() -> None:
    from vqa.report.explorer import script

    text = script("index", {"question": "</script><script>alert(1)</script> & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text[text.index("(") + 1 : text.rindex(")")])["question"].startswith("</script>")


def test_the_report_loads_the_model_and_the_dataset_once(trained_run, monkeypatch) -> None:
    """``make inspect`` draws its PNGs and the explorer of the whole split from one Run: the checkpoint, the
    tokenizer and the annotations are read once, not once per part."""
    loads: list[str] = []
    real_trained, real_load = vqa.run.load_trained, vqa.data.tasks.telling.load_telling

    def trained(*args):
        loads.append("model")
        return real_trained(*args)

    def dataset(*args):
        loads.append("dataset")
        return real_load(*args)

    monkeypatch.setattr(vqa.run, "load_trained", trained)
    monkeypatch.setattr(vqa.data.tasks.telling, "load_telling", dataset)
    out = run_report(load_config(None, [*trained_run, "inspect.n=2"]))
    assert out["explored"] > 0 and len(out["items"]) == 2
    assert sorted(loads) == ["dataset", "model"], loads


@pytest.mark.slow
def test_a_decoder_run_draws_a_map_per_word(trained_decoder, tmp_path: Path) -> None:
    """predict.py writes the decoder's own answers and the per-word figure; the report a figure per question."""
    cfg = load_config(None, trained_decoder)
    image = load_telling(cfg.data.annotations, cfg.data.images).image_path(1)
    p = subprocess.run([sys.executable, "pipelines/predict.py", *trained_decoder, "--image", str(image),
                        "--question", "What color is the circle?", "--choices", "Red.", "Blue.",
                        "--out", str(tmp_path / "overlay.png")],
                       cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert len([ln for ln in p.stdout.splitlines() if ln.startswith("wrote ")]) == 3
    with Image.open(tmp_path / "overlay_words.png") as im:
        assert im.format == "PNG" and im.size[1] > 5 * 100, "5 rows: 2 choices, 3 written answers"
    out = run_report(load_config(None, [*trained_decoder, "inspect.n=2"]))
    for it in out["items"]:
        with Image.open(Path(cfg.run.dir) / "inspect" / it["words_png"]) as im:
            assert im.size[1] > 7 * 150, "a row per candidate (4) and per answer it wrote (3), ~180 px each"
    assert 'alt="attention per word' in (Path(cfg.run.dir) / "inspect" / "index.html").read_text()
