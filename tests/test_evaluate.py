"""The eval stage: its results file agrees with an independent scorer; grounding metrics on hand-made maps."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from accelerate import Accelerator
from conftest import build_model

import vqa.evaluation.evaluate
import vqa.run
from vqa.checkpoint import Trained, load_trained
from vqa.config import load_config
from vqa.data.boxes import Box
from vqa.data.families import question_family
from vqa.data.grounding import load_grounding
from vqa.data.tasks.telling import load_telling
from vqa.evaluation.evaluate import (
    comparison_table,
    evaluate,
    grounding_line,
    grounding_scores,
    grounding_summary,
    run_label,
    skipped_line,
)
from vqa.run import Run


def toolkit_score(results: list[dict], answers: dict[int, tuple[str, str]]) -> tuple[float, dict[str, float]]:
    """The visual7w-toolkit rules, written again from its description: candidates[0], lowercase exact match,
    denominator = entries, per type."""
    total, right = Counter(), Counter()
    for entry in results:
        answer, qtype = answers[entry["qa_id"]]
        total[qtype] += 1
        right[qtype] += str(entry["candidates"][0]["answer"]).lower() == str(answer).lower()
    return sum(right.values()) / sum(total.values()), {t: right[t] / total[t] for t in total}


def test_predictions_scored_independently_equal_metrics(trained_run) -> None:
    cfg = load_config(None, [*trained_run, "eval.split=test"])
    metrics = evaluate(cfg, Accelerator(cpu=True))
    out = Path(cfg.run.dir) / "eval" / "test"
    results = json.loads((out / "predictions.json").read_text())
    ds = load_telling(cfg.data.annotations, cfg.data.images)
    test = ds.split("test")
    answers = {q.qa_id: (q.answer, q.type) for q in test}
    assert sorted(e["qa_id"] for e in results) == sorted(answers), "every test qa_id exactly once"
    for e in results:  # verbatim candidate strings, all four, chosen first
        assert sorted(c["answer"] for c in e["candidates"]) == sorted(ds.qa_by_id()[e["qa_id"]].candidates)
    accuracy, per_type = toolkit_score(results, answers)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    assert accuracy == pytest.approx(saved["accuracy"]) and per_type == pytest.approx(saved["per_type"])
    assert saved["n"] == len(test) and saved["model_variant"] == "attention" and saved["split"] == "test"
    grounded = [q for q in test if q.qa_id in load_grounding(cfg.data.grounding)]  # counting questions have none
    assert set(saved["grounding"]) == {"n", "hit", "mass"} and saved["grounding"]["n"] == len(grounded) > 0
    assert 0.0 <= saved["grounding"]["hit"] <= 1.0, "an attending model gets a hit rate"
    families = Counter(question_family(q.question) for q in test)
    assert saved["per_question_type_n"] == dict(families) and sum(families.values()) == len(test)
    assert set(saved["per_question_type"]) == set(families) and {"when was", "when is"} & set(families)
    assert not {"what", "how", "when", "where"} & set(families), "families are finer than the W types"
    rows = [json.loads(line) for line in (out / "per_question.jsonl").read_text().splitlines()]
    assert len(rows) == len(test) and sum(r["correct"] for r in rows) / len(rows) == pytest.approx(accuracy)
    for family, acc in saved["per_question_type"].items():  # recomputed from the per-question rows
        mine = [r["correct"] for r in rows if r["question_type"] == family]
        assert acc == pytest.approx(sum(mine) / len(mine))
    assert all(len(r["candidates"]) == 4 and r["chosen"] == results[i]["candidates"][0]["answer"]
               for i, r in enumerate(rows))  # fmt: skip


def test_grounding_metrics_on_hand_made_maps() -> None:
    att = np.array([[0.1, 0.6], [0.2, 0.1]])  # peak: row 0, col 1 -> centre (75, 25) in a 100 x 100 image
    top_right = Box(1, "a", 50, 0, 50, 50)
    assert grounding_scores(att, [top_right], 100, 100) == (True, pytest.approx(0.6))
    half_of_bottom_left = Box(1, "b", 0, 50, 25, 50)  # covers half of cell (1, 0)
    assert grounding_scores(att, [half_of_bottom_left], 100, 100) == (False, pytest.approx(0.1))
    both = grounding_scores(att, [top_right, half_of_bottom_left], 100, 100)
    assert both == (True, pytest.approx(0.7))
    # a non-square image: cells are 40 x 10 pixels; the peak cell's centre is (60, 5)
    assert grounding_scores(att, [Box(1, "c", 55, 0, 10, 8)], 80, 20)[0] is True


def test_uniform_maps_get_no_hit_but_keep_mass() -> None:
    box = Box(1, "a", 0, 0, 50, 50)  # the top-left cell of a 2 x 2 grid: a uniform map's argmax lands in it
    hit, mass = grounding_scores(np.full((2, 2), 0.25), [box], 100, 100)
    assert hit is None and mass == pytest.approx(0.25)
    peaked = np.array([[0.7, 0.1], [0.1, 0.1]])
    assert grounding_scores(peaked, [box], 100, 100)[0] is True
    assert grounding_scores(peaked, [box], 100, 100, uniform=True)[0] is None, "a non-attending variant never points"
    assert grounding_summary([None, None], [0.25, 0.5]) == {"n": 2, "hit": None, "mass": pytest.approx(0.375)}
    assert grounding_summary([True, None, False], [1.0, 0.0, 0.5])["hit"] == 0.5, "only maps with a peak count"


def copied_run(overrides: list[str], dest: Path) -> list[str]:
    """The trained run copied to ``dest``, so a test can write its eval/inspect outputs without touching the
    session's shared run: the overrides pointing at the copy."""
    src = Path(next(o for o in overrides if o.startswith("run.dir=")).split("=", 1)[1])
    shutil.copytree(src, dest)
    return [o for o in overrides if not o.startswith("run.dir=")] + [f"run.dir={dest}"]


def test_a_uniform_variant_has_a_null_hit_rate(trained_run, tmp_path, monkeypatch) -> None:
    """A real no_attention model (untrained: its attention is uniform by construction) through the eval stage."""

    def no_attention(*args):
        model, meta, path, tokenizer = load_trained(*args)
        return Trained(build_model(dataclasses.replace(model.spec, variant="no_attention")), meta, path, tokenizer)

    monkeypatch.setattr(vqa.run, "load_trained", no_attention)
    cfg = load_config(None, [*copied_run(trained_run, tmp_path / "run"), "eval.split=test"])
    metrics = evaluate(cfg, Accelerator(cpu=True))
    assert metrics["model_variant"] == "no_attention"
    g = metrics["grounding"]
    assert g["n"] > 0 and g["hit"] is None and 0.0 < g["mass"] < 1.0
    assert json.loads((tmp_path / "run" / "eval" / "test" / "metrics.json").read_text())["grounding"] == g


def test_comparison_table_reads_every_baseline(tmp_path) -> None:
    run = tmp_path / "exp"
    metrics = {"split": "test", "n": 4, "accuracy": 0.75, "model_variant": "attention", "per_type": {"what": 0.75},
               "per_question_type": {"what shape is": 0.75}, "per_question_type_n": {"what shape is": 4}}  # fmt: skip
    baselines = {"no_supervision": {**metrics, "accuracy": 0.5, "per_question_type": {"what shape is": 0.5}},
                 "image_only": {**metrics, "accuracy": 0.4, "per_question_type": {"what shape is": 0.4}},
                 "blind": {"n": 4, "accuracy": 0.25, "per_type": {"what": 0.25}}}  # fmt: skip
    for suffix, m in baselines.items():
        path = Path(f"{run}_{suffix}") / "eval" / "test" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(m))
    broken = Path(f"{run}_no_attention") / "eval" / "test" / "metrics.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    table = comparison_table(Run(load_config(None, [f"run.dir={run}"])), metrics)
    by_name = {line.split()[0]: line.split() for line in table.splitlines()[1:5]}
    assert set(by_name) == {"attention", "no_supervision", "image_only", "blind"}, table
    assert by_name["no_supervision"][2] == "0.500" and by_name["blind"][2] == "0.250"
    family = next(line.split() for line in table.splitlines() if line.startswith("what shape is"))
    assert family == ["what", "shape", "is", "4", "0.750", "0.500", "0.400", "-"], table
    assert run_label("runs/default_no_attention", "no_attention") == "no_attention"
    assert run_label("runs/default_no_supervision", "attention") == "no_supervision"
    assert run_label("runs/default", "attention") == "attention"


def test_eval_report_lines() -> None:
    assert skipped_line({"skipped_no_features": 3}) == "skipped 3 questions: their image has no features (see the " \
        "feature manifest)"  # fmt: skip
    assert skipped_line({"skipped_no_features": 1}).startswith("skipped 1 question:")
    assert skipped_line({"skipped_no_features": 0}) is None and skipped_line({}) is None
    assert grounding_line({"n": 5, "hit": None, "mass": 0.125}) == (
        "grounding (5 questions): hit n/a (uniform attention), attention mass in boxes 0.125")
    assert "hit 0.600," in grounding_line({"n": 5, "hit": 0.6, "mass": 0.5})
    assert "hit 0.700," in grounding_line({"n": 5, "pointing": 0.7, "mass": 0.5}), "metrics written before the rename"
    assert grounding_line({"n": 0, "hit": None, "mass": None}) is None and grounding_line(None) is None
