"""Visual7W pointing files: a valid one loads; every malformed record or box is refused by name."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vqa.common.errors import DatasetError
from vqa.data.tasks.pointing import candidate_boxes, check_boxes_inside, load_pointing, parse_pointing
from vqa.evaluation.scoring import result_entry, score_results
from vqa.run import Run


def valid() -> dict[str, Any]:
    return {
        "images": [
            {"image_id": 2412, "filename": "v7w_2412.jpg", "split": "train", "qa_pairs": [
                {"qa_id": 10, "image_id": 2412, "type": "which", "question": "Which cup is on the table?",
                 "answer": 101, "multiple_choices": [102, 103, 104]},
            ]},
            {"image_id": 7, "filename": "v7w_7.jpg", "split": "test", "qa_pairs": [
                {"qa_id": 11, "image_id": 7, "type": "which", "question": "Which animal is sleeping?",
                 "answer": 201, "multiple_choices": [202, 203, 204]},
            ]},
        ],
        "boxes": [{"box_id": b, "name": "cup", "x": -1, "y": 5, "width": 40, "height": 30} for b in (101, 102)]
        + [{"box_id": b, "name": "thing", "x": 50, "y": 60, "width": 20, "height": 10}
           for b in (103, 104, 201, 202, 203, 204)],
    }  # fmt: skip


def qa0(d: dict[str, Any]) -> dict[str, Any]:
    return d["images"][0]["qa_pairs"][0]


def test_valid_file_loads_with_box_ids_as_candidates(tmp_path: Path) -> None:
    path = tmp_path / "dataset_v7w_pointing.json"
    path.write_text(json.dumps(valid()))
    ds = load_pointing(path, tmp_path / "images")
    assert [q.qa_id for q in ds.qa] == [10, 11]
    q = ds.qa[0]
    assert q.candidates == ("101", "102", "103", "104") and q.type == "which"
    box = candidate_boxes(ds, q)[0]
    assert (box.x, box.width) == (0.0, 39.0)  # the official -1 starts are clipped, the far edge kept
    assert box.normalised(100, 50) == pytest.approx((0.0, 0.1, 0.39, 0.7))
    # the toolkit's string rule on box ids: an int in the results file matches the id
    entry = result_entry(q, ["101", "102", "103", "104"])
    assert score_results([entry], [q])["accuracy"] == 1.0


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        target, *keys, last = path.split(".")
        obj = qa0(d) if target == "qa" else d["boxes"][0]
        for k in keys:
            obj = obj[k]
        obj[last] = value

    return apply


MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown answer box": (_set("qa.answer", 999), r"qa_id 10: 'answer' is box_id 999, which is not in 'boxes'"),
    "unknown distractor": (_set("qa.multiple_choices", [102, 103, 998]),
                           r"qa_id 10: 'multiple_choices\[2\]' is box_id 998"),
    "answer among distractors": (_set("qa.multiple_choices", [101, 103, 104]),
                                 r"qa_id 10: the answer box_id 101 is also among the distractors"),
    "duplicate candidates": (_set("qa.multiple_choices", [103, 103, 104]),
                             r"qa_id 10: duplicate distractor box_ids: \[103\]"),
    "answer is text": (_set("qa.answer", "the red cup"), r"qa_id 10: 'answer' must be a box_id \(an integer\)"),
    "bool id": (_set("qa.multiple_choices", [True, 103, 104]), r"'multiple_choices\[0\]' must be a box_id"),
    "two distractors": (_set("qa.multiple_choices", [102, 103]), r"exactly 3 distractors, got 2"),
    "telling type": (_set("qa.type", "what"), r"qa_id 10: unknown type 'what'; expected one of which"),
    "box without width": (lambda d: d["boxes"][0].pop("width"), r"boxes\[0\] \(box_id 101\): missing field 'width'"),
    "box id text": (_set("box.box_id", "101"), r"boxes\[0\].*'box_id' must be an integer"),
    "box coordinate text": (_set("box.x", "3"), r"box_id 101\): x, y, width, height must be finite numbers"),
    "empty box": (_set("box.width", 0), r"box_id 101\): the box is empty"),
    "box left of the image": (_set("box.x", -50), r"box_id 101\): the box is empty once clipped"),
    "duplicate box id": (lambda d: d["boxes"].append(dict(d["boxes"][1])), r"duplicate box_id 102"),
    "name not text": (_set("box.name", 3), r"box_id 101\): 'name' must be a string"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_record_is_refused_by_name(case: str) -> None:
    data = copy.deepcopy(valid())
    mutate, match = MALFORMED[case]
    mutate(data)
    with pytest.raises(DatasetError) as e:
        parse_pointing(data, "/nonexistent")
    assert any(__import__("re").search(match, p) for p in e.value.problems), e.value.problems


def test_no_boxes_list() -> None:
    data = valid()
    del data["boxes"]
    with pytest.raises(DatasetError, match="top-level 'boxes' list"):
        parse_pointing(data, "/nonexistent")


def test_boxes_outside_their_image_are_named() -> None:
    ds = parse_pointing(valid(), "/nonexistent")
    check_boxes_inside(ds, {2412: (100, 100), 7: (100, 100)})  # every box starts inside
    with pytest.raises(DatasetError) as e:
        check_boxes_inside(ds, {2412: (100, 100), 7: (40, 40)})
    assert len(e.value.problems) == 4
    assert e.value.problems[0].startswith("image_id 7 qa_id 11: box_id 201 starts at (50, 60), outside the 40x40")


def test_data_task_picks_the_loader(tmp_path: Path) -> None:
    from conftest import tiny_config

    cfg = tiny_config(tmp_path)
    path = tmp_path / "dataset_v7w_pointing.json"
    path.write_text(json.dumps(valid()))
    cfg.data.annotations, cfg.data.task = str(path), "pointing"
    assert Run(cfg).dataset.boxes
    cfg.data.task = "telling"
    with pytest.raises(DatasetError) as e:
        _ = Run(cfg).dataset
    assert "unknown type 'which'" in e.value.problems[0] and "set data.task=pointing" in e.value.problems[0]


# ------------------------------------------------------------------------------------------------ a trained run
@pytest.fixture(scope="module")
def pointing_run(tiny_dataset, tmp_path_factory) -> Any:
    """The tiny world's pointing file, its features (96 px: 3x3) and a 2-epoch pointing model, evaluated on test."""
    from accelerate import Accelerator

    from vqa.config import load_config, save_config
    from vqa.data.synth.pointing import annotation_paths
    from vqa.evaluation.evaluate import evaluate
    from vqa.features.extract import extract_features
    from vqa.training import train

    ann = annotation_paths(tiny_dataset)["pointing"]
    run = tmp_path_factory.mktemp("pointing") / "run"
    cfg = load_config(None, [f"data.annotations={ann}", f"data.images={tiny_dataset.data.images}", "data.task=pointing",
                             f"run.dir={run}", "features.image_size=96", "features.num_workers=0",
                             "model.embed_dim=16", "model.hidden_dim=32", "model.attention_dim=32", "train.epochs=2",
                             "train.batch_size=8", "eval.split=test"])  # fmt: skip
    save_config(cfg)
    extract_features(cfg, Run(cfg).dataset.image_paths(), Accelerator(cpu=True))
    train(cfg, Accelerator(cpu=True))
    evaluate(cfg, Accelerator(cpu=True))
    return cfg


def _eval_files(cfg: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    out = Path(cfg.run.dir) / "eval" / "test"
    rows = [json.loads(line) for line in (out / "per_question.jsonl").read_text().splitlines()]
    return json.loads((out / "predictions.json").read_text()), rows, json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_eval_writes_box_ids_and_the_toolkit_rule_gives_the_metrics(pointing_run) -> None:
    predictions, _, metrics = _eval_files(pointing_run)
    ds = Run(pointing_run).dataset
    by_id = {q.qa_id: q for q in ds.split("test")}
    assert all(isinstance(c["answer"], int) for e in predictions for c in e["candidates"])
    right = sum(str(e["candidates"][0]["answer"]).lower() == str(by_id[e["qa_id"]].answer).lower()
                for e in predictions)  # the toolkit's rule, verbatim
    assert metrics["n"] == len(by_id) == len(predictions)
    assert metrics["accuracy"] == pytest.approx(right / len(predictions))
    assert set(metrics["per_type"]) == {"which"}
    assert metrics["grounding"]["n"] == len(by_id)  # grounded on each question's answer box


def test_renaming_every_box_changes_no_prediction(pointing_run, tmp_path: Path) -> None:
    """The model never reads a box's name (it often is the answer): rename them all, evaluate again, compare."""
    from accelerate import Accelerator

    from vqa.config import load_config
    from vqa.evaluation.evaluate import evaluate

    data = json.loads(Path(pointing_run.data.annotations).read_text())
    for box in data["boxes"]:
        box["name"] = "answer" if box["box_id"] % 2 else "not this one"
    renamed = tmp_path / "dataset_v7w_pointing.json"
    renamed.write_text(json.dumps(data))
    shutil.copytree(pointing_run.run.dir, tmp_path / "run", ignore=shutil.ignore_patterns("eval", "inspect"))
    cfg = load_config(Path(pointing_run.run.dir) / "config.yaml", [f"data.annotations={renamed}",
                                                                   f"run.dir={tmp_path / 'run'}",
                                                                   f"features.dir={pointing_run.run.dir}/features"])
    evaluate(cfg, Accelerator(cpu=True))
    before, rows_before, _ = _eval_files(pointing_run)
    after, rows_after, _ = _eval_files(cfg)
    assert before == after
    assert [[c["score"] for c in r["candidates"]] for r in rows_before] == \
        [[c["score"] for c in r["candidates"]] for r in rows_after]  # fmt: skip


def test_predictor_takes_boxes_and_agrees_with_eval(pointing_run) -> None:
    from vqa import Predictor
    from vqa.common.errors import VQAError

    _, rows, _ = _eval_files(pointing_run)
    ds = Run(pointing_run).dataset
    p = Predictor.from_run(pointing_run.run.dir, device="cpu")
    for row in rows[:6]:
        q = ds.qa_by_id()[row["qa_id"]]
        boxes = [(r.x, r.y, r.width, r.height) for r in candidate_boxes(ds, q)]
        r = p.predict(ds.image_path(q.image_id), q.question, boxes)
        assert r.scores == pytest.approx([c["score"] for c in row["candidates"]], abs=1e-4)
        assert r.choices[r.best] == boxes[[c["answer"] for c in row["candidates"]].index(row["chosen"])]
    with pytest.raises(VQAError, match=r"choice 1: a pointing run's choices are boxes \(x, y, width, height\)"):
        p.predict(ds.image_path(q.image_id), q.question, [boxes[0], "the red one"])
    with pytest.raises(VQAError, match=r"choice 0: the box .* has nothing inside the"):
        p.predict(ds.image_path(q.image_id), q.question, [(5000, 0, 10, 10), boxes[1]])


@pytest.mark.slow
def test_inspect_draws_each_candidates_box(pointing_run) -> None:
    from vqa.report.inspect import run_report

    pointing_run.inspect.n = 3
    out = run_report(pointing_run)
    assert len(out["items"]) == 3
    assert all((Path(pointing_run.run.dir) / "inspect" / it["png"]).stat().st_size > 10_000 for it in out["items"])
