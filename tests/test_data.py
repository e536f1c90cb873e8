"""The Visual7W loader: valid files load; every malformed record is rejected with a message naming it."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vqa.common.errors import DatasetError
from vqa.data.grounding import load_grounding, parse_grounding
from vqa.data.tasks.telling import load_telling, parse_telling
from vqa.evaluation.scoring import result_entry, score_results


def valid() -> dict[str, Any]:
    return {
        "images": [
            {"image_id": 2412, "filename": "v7w_2412.jpg", "split": "train", "qa_pairs": [
                {"qa_id": 986, "image_id": 2412, "type": "where", "question": "Where is the man?",
                 "answer": "On the beach.", "multiple_choices": ["In the water.", "On a boat.", "In the sky."]},
                {"qa_id": 987, "image_id": 2412, "type": "what", "question": "What is he holding?",
                 "answer": "A kite.", "multiple_choices": ["A dog.", "A towel.", "A phone."]},
            ]},
            {"image_id": 7, "filename": "v7w_7.jpg", "split": "test", "qa_pairs": [
                {"qa_id": 5, "image_id": 7, "type": "when", "question": "When was this taken?",
                 "answer": "At night.", "multiple_choices": ["At noon.", "At dawn.", "At dusk."]},
            ]},
        ],
        "extra_top_level_key": {"ignored": True},
    }  # fmt: skip


def qa0(d: dict[str, Any]) -> dict[str, Any]:
    return d["images"][0]["qa_pairs"][0]


def test_valid_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(valid()))
    ds = load_telling(path, tmp_path / "images")
    assert [q.qa_id for q in ds.split("train")] == [986, 987] and [q.qa_id for q in ds.split("test")] == [5]
    q = ds.split("train")[0]
    assert q.candidates == ("On the beach.", "In the water.", "On a boat.", "In the sky.")
    assert ds.image_path(2412) == (tmp_path / "images" / "v7w_2412.jpg").resolve()
    assert ds.image_ids() == [7, 2412] and ds.image_ids(["test"]) == [7]
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        ds.split("dev")


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        node = d
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]

    return mutate


Q = ["images", 0, "qa_pairs", 0]
I0 = ["images", 0]
MALFORMED = {
    "qa missing answer": (_delete([*Q, "answer"]), "image_id 2412 qa_pairs[0] qa_id 986: missing field 'answer'"),
    "qa missing qa_id": (_delete([*Q, "qa_id"]), "image_id 2412 qa_pairs[0]: missing field 'qa_id'"),
    "qa_id is a string": (_set([*Q, "qa_id"], "986"), "'qa_id' must be an integer, got '986'"),
    "question is a number": (_set([*Q, "question"], 42), "qa_id 986: 'question' must be a string, got int"),
    "empty question": (_set([*Q, "question"], "  "), "qa_id 986: 'question' is empty"),
    "10k-char question": (_set([*Q, "question"], "why " * 2500), "'question' is 10000 characters long"),
    "2 distractors": (_set([*Q, "multiple_choices"], ["A.", "B."]), "exactly 3 distractors, got 2"),
    "4 distractors": (_set([*Q, "multiple_choices"], ["A.", "B.", "C.", "D."]), "exactly 3 distractors, got 4"),
    "choices not a list": (_set([*Q, "multiple_choices"], "A. B. C."), "'multiple_choices' must be a list, got str"),
    "distractor not a string": (_set([*Q, "multiple_choices"], ["A.", None, "C."]),
                                "'multiple_choices[1]' must be a string, got NoneType"),
    "duplicate distractors": (_set([*Q, "multiple_choices"], ["A boat.", "a BOAT.", "C."]),
                              "qa_id 986: duplicate distractors after lowercasing: ['a boat.']"),
    "answer among distractors": (_set([*Q, "multiple_choices"], ["on the BEACH.", "B.", "C."]),
                                 "qa_id 986: the answer 'On the beach.' is also among the distractors"),
    "qa image_id mismatch": (_set([*Q, "image_id"], 1), "qa_id 986: image_id 1 differs from its image's 2412"),
    "qa not an object": (_set(Q, [1, 2]), "image_id 2412 qa_pairs[0]: a QA record must be an object, got list"),
    "unknown split": (_set([*I0, "split"], "dev"), "image_id 2412: unknown split 'dev'"),
    "image missing filename": (_delete([*I0, "filename"]), "image_id 2412: missing field 'filename'"),
    "image_id a float": (_set([*I0, "image_id"], 2412.0), "images[0]: 'image_id' must be an integer, got 2412.0"),
    "qa_pairs not a list": (_set([*I0, "qa_pairs"], {}), "image_id 2412: 'qa_pairs' must be a list, got dict"),
    "filename with ..": (_set([*I0, "filename"], "../secret.jpg"), "image_id 2412: filename '../secret.jpg' escapes"),
    "absolute filename": (_set([*I0, "filename"], "/etc/passwd"),
                          "image_id 2412: filename '/etc/passwd' is an absolute"),
    "duplicate qa_id": (_set(["images", 1, "qa_pairs", 0, "qa_id"], 986),
                        "image_id 7 qa_id 986: duplicate qa_id (also in image_id 2412)"),
    "duplicate image_id": (_set(["images", 1, "image_id"], 2412), "image_id 2412: duplicate image_id"),
    "image not an object": (_set(["images", 1], "v7w_7.jpg"), "images[1]: an image record must be an object, got str"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_record_is_rejected_by_name(tmp_path: Path, case: str) -> None:
    mutate, expected = MALFORMED[case]
    data = copy.deepcopy(valid())
    mutate(data)
    with pytest.raises(DatasetError) as e:
        parse_telling(data, tmp_path)
    assert any(expected in p for p in e.value.problems), e.value.render()


def test_each_problem_gets_its_own_line(tmp_path: Path) -> None:
    data = valid()
    qa0(data)["answer"] = ""
    data["images"][1]["split"] = "dev"
    with pytest.raises(DatasetError) as e:
        parse_telling(data, tmp_path)
    assert len(e.value.problems) == 2
    assert "2 problem(s)" in e.value.render()


def test_symlink_out_of_the_image_folder_is_refused(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", images / "v7w_2412.jpg")
    with pytest.raises(DatasetError, match=r"image_id 2412: filename 'v7w_2412.jpg' resolves to .* outside the image"):
        parse_telling(valid(), images)


def test_non_ascii_text_survives_the_file_and_other_encodings_are_refused(tmp_path: Path) -> None:
    """Converted or hand-edited files hold raw UTF-8 (not \\u escapes): the text must come back exactly, whatever
    the platform's default encoding; a file saved as Latin-1 is refused with one clear line, not a traceback."""
    data = valid()
    question = "Où est l'homme? 男人在哪里？"
    qa0(data)["question"] = question
    path = tmp_path / "ann.json"
    path.write_bytes(json.dumps(data, ensure_ascii=False).encode("utf-8"))
    assert load_telling(path, tmp_path).split("train")[0].question == question
    qa0(data)["question"] = "Où est l'homme?"
    latin1 = json.dumps(data, ensure_ascii=False).encode("latin-1")
    path.write_bytes(latin1)
    at = latin1.index("ù".encode("latin-1"))  # the first non-UTF-8 byte, named so the user can find it
    with pytest.raises(DatasetError, match=rf"ann\.json: not UTF-8 text \(invalid start byte at byte {at}\)"):
        load_telling(path, tmp_path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "Visual7W annotations not found"),
        ("{not json", r"not valid JSON \(line 1, column 2\)"),
        ('["images"]', "the top level must be an object with an 'images' list, got list"),
        ('{"imgs": []}', "the top level has no 'images' list"),
        ('{"images": []}', "the annotations hold no QA pairs"),
    ],
)
def test_bad_files(tmp_path: Path, content: str | None, match: str) -> None:
    path = tmp_path / "ann.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=match):
        load_telling(path, tmp_path)


SIX_WS = ("what", "where", "when", "who", "why", "how")


def one_qa_per_type(types: tuple[Any, ...]) -> dict[str, Any]:
    """A valid telling file with one image and one QA per entry of ``types`` (qa_id 100, 101, ...)."""
    qa_pairs = [{"qa_id": 100 + i, "image_id": 1, "type": t, "question": f"Question {i}?", "answer": "Yes.",
                 "multiple_choices": ["No.", "Maybe.", "Never."]} for i, t in enumerate(types)]  # fmt: skip
    return {"images": [{"image_id": 1, "filename": "v7w_1.jpg", "split": "test", "qa_pairs": qa_pairs}]}


def test_every_w_loads_and_gets_its_own_accuracy(tmp_path: Path) -> None:
    """Each of Visual7W's six telling types loads with its type kept verbatim, because the metrics report accuracy
    per type: six types in, six per-type columns out, each counting its own questions."""
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(one_qa_per_type(SIX_WS)))
    qas = load_telling(path, tmp_path).split("test")
    assert [(q.qa_id, q.type) for q in qas] == [(100 + i, t) for i, t in enumerate(SIX_WS)]
    # right on 'what', 'when' and 'why' (even positions), wrong on the others
    entries = [result_entry(q, q.candidates if i % 2 == 0 else q.candidates[::-1]) for i, q in enumerate(qas)]
    m = score_results(entries, qas, "test")
    assert m["per_type_n"] == dict.fromkeys(SIX_WS, 1)
    assert m["per_type"] == {"how": 0.0, "what": 1.0, "when": 1.0, "where": 0.0, "who": 0.0, "why": 1.0}


@pytest.mark.parametrize("bad", ["which", "What", "how many", "", None, 3])
def test_a_type_outside_the_six_ws_is_refused_by_qa_id(tmp_path: Path, bad: Any) -> None:
    """A pointing-task QA ('which'), a capitalised or free-text type would open a bogus extra per-type column in
    every metrics table; the loader refuses it, naming the QA and the six types it accepts, and nothing else."""
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(one_qa_per_type(("what", bad, "why"))))
    with pytest.raises(DatasetError) as e:
        load_telling(path, tmp_path)
    assert str(path) in e.value.headline
    hint = " (a pointing question: set data.task=pointing)" if bad == "which" else ""
    assert e.value.problems == [
        f"image_id 1 qa_pairs[1] qa_id 101: unknown type {bad!r}; expected one of what, where, when, who, why, how"
        + hint
    ]


# ------------------------------------------------------------------------------------------------ grounding
def test_grounding_boxes_clip_negatives_and_group_by_qa(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"boxes": [
        {"box_id": 1, "qa_id": 986, "name": "man", "x": -10, "y": 5, "width": 30, "height": 40},
        {"box_id": 2, "qa_id": 986, "name": "beach", "x": 0, "y": -50, "width": 10, "height": 20},
        {"box_id": 3, "qa_id": 5, "name": "moon", "x": 1.5, "y": 2, "width": 3, "height": 4},
    ], "extra": 1}))  # fmt: skip
    boxes = load_grounding(path)
    assert [(b.x, b.y, b.width, b.height) for b in boxes[986]] == [(0, 5, 20, 40)]  # box 2 lies outside: dropped
    assert boxes[5][0].xyxy == (1.5, 2, 4.5, 6) and boxes[5][0].name == "moon"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([], "must be an object with a 'boxes' list"),
        ({"boxes": [{"box_id": 9, "qa_id": 1, "x": 0, "y": 0, "width": 1}]},
         r"boxes\[0\] \(box_id 9\): missing field 'height'"),
        ({"boxes": [{"box_id": 9, "qa_id": "1", "x": 0, "y": 0, "width": 1, "height": 1}]},
         "'qa_id' must be an integer"),
        ({"boxes": [{"box_id": 9, "qa_id": 1, "x": "0", "y": 0, "width": 1, "height": 1}]}, "must be numbers"),
    ],
)  # fmt: skip
def test_bad_grounding(data: Any, match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        parse_grounding(data)
