"""``from vqa import Predictor``: the same choices as ``make eval``, the caller's order, any image form."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from accelerate import Accelerator
from PIL import Image

from vqa.common.errors import VQAError
from vqa.config import load_config, save_config
from vqa.data.tasks.telling import load_telling
from vqa.evaluation.evaluate import evaluate


@pytest.fixture(scope="module")
def run(trained_run, tmp_path_factory) -> tuple[Path, object]:
    """A private copy of the tiny trained run, saved as the CLI saves a run (config.yaml), evaluated on test."""
    src = Path(next(o for o in trained_run if o.startswith("run.dir=")).partition("=")[2])
    dest = tmp_path_factory.mktemp("predictor") / "run"
    shutil.copytree(src, dest)
    cfg = load_config(None, [*(o for o in trained_run if not o.startswith("run.dir=")), f"run.dir={dest}",
                             "eval.split=test"])  # fmt: skip
    save_config(cfg)
    evaluate(cfg, Accelerator(cpu=True))
    return dest, cfg


def test_predictor_agrees_with_eval_on_every_test_question(run) -> None:
    from vqa import Predictor

    run_dir, cfg = run
    rows = [json.loads(line) for line in (run_dir / "eval" / "test" / "per_question.jsonl").read_text().splitlines()]
    ds = load_telling(cfg.data.annotations, cfg.data.images)
    qas = {q.qa_id: q for q in ds.split("test")}
    p = Predictor.from_run(run_dir, device="cpu")
    items = [(ds.image_path(qas[r["qa_id"]].image_id), r["question"], [c["answer"] for c in r["candidates"]])
             for r in rows]  # fmt: skip
    got = p.predict_batch(items)
    assert len(got) == len(rows) > 0
    for r, pred in zip(rows, got, strict=True):
        eval_scores = np.array([c["score"] for c in r["candidates"]])  # the file's order, as given to predict
        np.testing.assert_allclose(pred.scores, eval_scores, rtol=1e-4, atol=1e-4, err_msg=str(r))
        if np.sort(eval_scores)[-1] - np.sort(eval_scores)[-2] > 1e-3:  # no (near-)tie at the top
            assert pred.answer == r["chosen"], (r["qa_id"], pred.scores, eval_scores)
        assert pred.attention.shape == (4, 3, 3) and pred.attention_glimpses.shape[:1] == (4,)
    one = p.predict(*items[0])  # alone or in a batch: the same answer
    np.testing.assert_allclose(one.scores, got[0].scores, rtol=1e-5, atol=1e-5)


def test_probabilities_follow_the_callers_order_and_any_image_form(run, tmp_path) -> None:
    from vqa import Predictor

    run_dir, cfg = run
    ds = load_telling(cfg.data.annotations, cfg.data.images)
    qa = ds.split("test")[0]
    p = Predictor.from_run(run_dir, device="cpu")
    path = ds.image_path(qa.image_id)
    a = p.predict(path, qa.question, list(qa.candidates))
    b = p.predict(path, qa.question, list(reversed(qa.candidates)))
    assert a.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(b.probabilities, a.probabilities[::-1], rtol=1e-5, atol=1e-6)
    assert b.choices == list(reversed(qa.candidates)) and a.answer == b.answer
    with Image.open(path) as img:
        pil = img.convert("RGB")
    pil.save(tmp_path / "same.png")  # lossless: the same pixels as a file
    scores = [p.predict(image, qa.question, list(qa.candidates)).scores
              for image in (tmp_path / "same.png", pil, np.asarray(pil))]  # fmt: skip
    for other in scores[1:]:
        np.testing.assert_allclose(other, scores[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("image", "question", "choices", "message"),
    [
        ("missing.jpg", "What?", ["a", "b"], "missing file"),
        (np.zeros((4, 4, 3), dtype=np.float32), "What?", ["a", "b"], "must be uint8"),
        (None, "What?", ["a", "b"], "must be a path"),
        ("IMG", "", ["a", "b"], "non-empty string"),
        ("IMG", "What?", ["a"], "2 or more choices"),
        ("IMG", "What?", ["Red.", "red."], "must differ"),
    ],
)
def test_bad_input_gets_a_clear_error(run, image, question, choices, message) -> None:
    from vqa import Predictor

    run_dir, cfg = run
    if isinstance(image, str) and image == "IMG":
        ds = load_telling(cfg.data.annotations, cfg.data.images)
        image = ds.image_path(ds.split("test")[0].image_id)
    elif isinstance(image, str):
        image = run_dir / image
    with pytest.raises(VQAError, match=message):
        Predictor.from_run(run_dir, device="cpu").predict(image, question, choices)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path) -> None:
    from vqa import Predictor

    with pytest.raises(VQAError, match="not a run folder"):
        Predictor.from_run(tmp_path)
