"""The eval stage: its results file agrees with an independent scorer; grounding metrics on hand-made maps."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from accelerate import Accelerator

from vqa.config import load_config
from vqa.data import Box, load_telling
from vqa.evaluate import evaluate, grounding_scores


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
    assert set(saved["grounding"]) == {"n", "pointing", "mass"} and saved["grounding"]["n"] == len(test)
    rows = [json.loads(line) for line in (out / "per_question.jsonl").read_text().splitlines()]
    assert len(rows) == len(test) and sum(r["correct"] for r in rows) / len(rows) == pytest.approx(accuracy)
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
