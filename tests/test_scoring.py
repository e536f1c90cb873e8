"""Official scoring, on hand-made cases with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vqa.common.errors import ScoringError
from vqa.data.visual7w import QA
from vqa.evaluation.scoring import (
    answer_prior_baseline,
    choose,
    per_question_type_table,
    per_type_table,
    question_family,
    rank_candidates,
    rank_order,
    result_entry,
    score_results,
    strictly_best,
    write_results,
)

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


@pytest.mark.parametrize(
    ("question", "family"),
    [
        # the synthetic world's templates (vqa/data/synth/)
        ("What shape is the red object?", "what shape is"),
        ("What shape is the striped object?", "what shape is"),
        ("What is the shape of the dotted object?", "what is the"),
        ("What color is the striped circle?", "what color is"),
        ("Where is the red circle?", "where is"),
        ("Where is the red circle located?", "where is"),
        ("How is the red circle painted?", "how is"),
        ("How is the blue star filled?", "how is"),
        ("How many circles are there?", "how many"),
        ("How many red objects are in the picture?", "how many"),
        ("When was this picture taken?", "when was"),
        ("When is it in this picture?", "when is"),
        # real Visual7W-style questions
        ("What color is the man's shirt?", "what color is"),
        ("What color are the flowers?", "what color are"),
        ("How many people are there?", "how many"),
        ("Who is holding the umbrella?", "who is"),
        ("Who took the photo?", "who"),
        ("Why is the man smiling?", "why is"),
        ("Why?", "why"),
        ("What kind of animal is this?", "what kind of"),
        ("What type of food is on the plate?", "what type of"),
        ("What is on the table?", "what is"),
        ("What is the man holding?", "what is the"),
        ("What are the people doing?", "what are the"),
        ("Which hand holds the cup?", "which"),
        ("How does the man feel?", "how does"),
        ("how   MANY dogs?!", "how many"),
        # whole words only; unknown openings fall back to the first two words
        ("Whose bag is this?", "whose bag"),
        ("However, is it raining?", "however is"),
        ("Is there a dog?", "is there"),
        ("Dogs?", "dogs"),
        ("?!", "other"),
    ],
)
def test_question_family(question: str, family: str) -> None:
    assert question_family(question) == family


def test_score_results_by_question_family() -> None:
    qas = [
        QA(1, 1, "test", "how", "How many dogs?", "Two.", ("One.", "Three.", "Four.")),
        QA(2, 1, "test", "how", "How many cats?", "One.", ("Two.", "Three.", "Four.")),
        QA(3, 1, "test", "how", "How is it painted?", "Red.", ("Blue.", "Green.", "Pink.")),
    ]
    m = score_results([entry(1, "Two."), entry(2, "Two."), entry(3, "Red.")], qas)
    assert m["per_type"] == {"how": pytest.approx(2 / 3)}
    assert m["per_question_type"] == {"how is": 1.0, "how many": 0.5}
    assert m["per_question_type_n"] == {"how is": 1, "how many": 2}


def test_choose_is_the_tie_rule() -> None:
    cands, answer = ["A dog.", "A cat.", "A cow.", "A hen."], "a DOG."
    assert choose(cands, [0.5, 0.5, 0.5, 0.5], answer) == 1, "all tied: a wrong candidate"
    assert choose(cands, [0.5, 0.5, 0.5, 0.5]) == 0, "no answer known: the first top candidate"
    assert choose(cands, [0.1, 0.9, 0.9, 0.0], answer) == 1
    assert choose(cands, [0.9, 0.1, 0.2, 0.0], answer) == 0
    assert choose(cands, [float("nan"), 0.0, -1.0, -2.0], answer) == 1, "NaN ranks last"
    assert rank_order(cands, [0.0, 3.0, 3.0, 1.0], answer) == [1, 2, 3, 0]


def test_vectorised_rule_agrees_with_choose() -> None:
    """accuracy_of uses strictly_best; on many rows with frequent ties (and NaN, inf) it must say what choose says."""
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(2000, 4)).astype(float)  # [N, 4], ties in most rows
    scores[rng.random(scores.shape) < 0.05] = np.nan
    scores[rng.random(scores.shape) < 0.05] = np.inf
    true_pos = rng.integers(0, 4, size=2000)  # [N]
    cands = ["a", "b", "c", "d"]
    expected = [choose(cands, row.tolist(), cands[t]) == t for row, t in zip(scores, true_pos, strict=True)]
    got = strictly_best(scores, true_pos)
    assert got.tolist() == expected
    assert 0.1 < got.mean() < 0.9, "the sample holds both verdicts"
    assert not strictly_best(np.zeros((3, 4)), np.array([0, 1, 3])).any(), "a tie is never correct"


def test_tables_survive_old_metrics_files() -> None:
    new = {"n": 10, "accuracy": 0.5, "per_type": {"how": 0.5}, "per_question_type": {"how many": 0.25, "how is": 1.0},
           "per_question_type_n": {"how many": 8, "how is": 2}}  # fmt: skip
    old = {"n": 10, "accuracy": 0.3, "per_type": {"how": 0.3}}  # before per_question_type existed
    broken = {"per_type": "oops"}  # no n, no accuracy, a per_type that is not a mapping
    table = per_type_table({"attention": new, "blind": old, "image_only": broken})
    assert table.splitlines()[1].split() == ["attention", "10", "0.500", "0.500"]
    assert table.splitlines()[3].split() == ["image_only", "?", "nan", "nan"]
    lines = per_question_type_table({"attention": new, "blind": old}).splitlines()
    assert lines[0].split() == ["question", "type", "n", "attention", "blind"]
    assert lines[1].split() == ["how", "many", "8", "0.250", "-"], "most frequent family first; '-' when absent"
    assert lines[2].split() == ["how", "is", "2", "1.000", "-"]
