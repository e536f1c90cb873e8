"""Official scoring, on hand-made cases with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vqa.data import QA
from vqa.errors import ScoringError
from vqa.scoring import answer_prior_baseline, rank_candidates, result_entry, score_results, write_results

QAS = [
    QA(1, 10, "test", "what", "What is it?", "A dog.", ("A cat.", "A cow.", "A hen.")),
    QA(2, 10, "test", "where", "Where is it?", "On the sofa.", ("In the car.", "At home.", "Outside.")),
    QA(3, 11, "test", "where", "Where is she?", "At work.", ("At school.", "In bed.", "On a bus.")),
    QA(4, 11, "test", "when", "When?", "At noon.", ("At night.", "At dawn.", "At dusk.")),
]


def entry(qa_id: int, *answers: str) -> dict:
    return {"qa_id": qa_id, "question": "?", "candidates": [{"answer": a} for a in answers]}


def test_lowercase_exact_match_punctuation_kept() -> None:
    results = [
        entry(1, "a DOG.", "A cat."),  # case ignored -> correct
        entry(2, "On the sofa", "In the car."),  # missing period -> wrong
        entry(3, "At work.", "In bed."),  # exact -> correct
        entry(4, " At noon.", "At night."),  # leading space -> wrong (exact match)
    ]
    m = score_results(results, QAS, "test")
    assert (m["n"], m["correct"], m["accuracy"]) == (4, 2, 0.5)
    assert m["per_type"] == {"what": 1.0, "when": 0.0, "where": 0.5}
    assert m["per_type_n"] == {"what": 1, "when": 1, "where": 2}


def test_only_the_first_candidate_counts() -> None:
    m = score_results([entry(1, "A cat.", "A dog.")], QAS)
    assert m["accuracy"] == 0.0


def test_denominator_is_entries_and_missing_qa_are_reported() -> None:
    m = score_results([entry(1, "A dog."), entry(1, "A dog.")], QAS)
    assert (m["n"], m["accuracy"], m["missing"], m["duplicates"]) == (2, 1.0, 3, 1)


def test_unknown_or_missing_qa_id_is_an_error() -> None:
    with pytest.raises(ScoringError, match=r"entry 1: cannot find QA #99 in split 'test'"):
        score_results([entry(1, "A dog."), entry(99, "x")], QAS, "test")
    with pytest.raises(ScoringError, match="entry 0: no 'qa_id'"):
        score_results([{"candidates": [{"answer": "A dog."}]}], QAS)
    with pytest.raises(ScoringError, match="must hold a JSON list"):
        score_results({"qa_id": 1}, QAS)
    with pytest.raises(ScoringError, match="holds no entries"):
        score_results([], QAS)


def test_empty_candidates_count_wrong() -> None:
    assert score_results([entry(1)], QAS)["accuracy"] == 0.0


def test_ties_count_wrong() -> None:
    qa = QAS[0]
    assert rank_candidates(qa.candidates, [1.0, 1.0, 0.0, 0.0], qa.answer)[0] == "A cat."
    assert rank_candidates(qa.candidates, [0.5, 0.5, 0.5, 0.5], qa.answer)[0] != qa.answer
    assert rank_candidates(qa.candidates, [2.0, 1.0, 1.0, 0.0], qa.answer) == ["A dog.", "A cat.", "A cow.", "A hen."]
    assert rank_candidates(qa.candidates, [0.0, 3.0, 3.0, 1.0], qa.answer)[:2] == ["A cat.", "A cow."]
    with pytest.raises(ValueError):
        rank_candidates(qa.candidates, [1.0], qa.answer)


def test_results_file_round_trip_in_toolkit_format(tmp_path: Path) -> None:
    entries = [result_entry(q, rank_candidates(q.candidates, [0.1, 0.9, 0.0, 0.0], q.answer)) for q in QAS]
    path = write_results(tmp_path / "predictions.json", entries)
    data = json.loads(path.read_text())
    assert data[0] == {"qa_id": 1, "question": "What is it?",
                       "candidates": [{"answer": "A cat."}, {"answer": "A dog."}, {"answer": "A cow."},
                                      {"answer": "A hen."}]}  # fmt: skip
    assert score_results(data, QAS)["accuracy"] == 0.0


def test_answer_prior_baseline() -> None:
    train = [QA(9, 1, "train", "what", "?", "A cat.", ("A dog.", "A cow.", "A hen."))] * 3
    m = answer_prior_baseline(train, QAS[:1])  # 'A cat.' is the most frequent train answer -> picked, wrong
    assert m["accuracy"] == 0.0
    m = answer_prior_baseline([], QAS)  # all counts tie -> every pick wrong
    assert m["accuracy"] == 0.0
