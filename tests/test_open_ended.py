"""Open-ended answers (``eval.mode=open``) for both heads, the toolkit's open rule, and ``Predictor.generate``."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from accelerate import Accelerator

from vqa.common.errors import VQAError
from vqa.config import load_config, save_config
from vqa.data.tasks.telling import load_telling
from vqa.data.visual7w import QA
from vqa.data.words import build_tokenizer, detokenize, token_ids
from vqa.evaluation.evaluate import evaluate
from vqa.evaluation.open_ended import answer_pool, evaluate_open, open_scores
from vqa.run import Run


def toolkit_open(results: list[dict], truth: dict[int, tuple[str, str]], k: int) -> tuple[float, dict[str, float]]:
    """The visual7w-toolkit's ``--mode open --topk K``, written again from its description: correct when the true
    answer equals, lowercase, any of the first K candidates' answer; denominator = entries; per type."""
    total, right = Counter(), Counter()
    for entry in results:
        answer, qtype = truth[entry["qa_id"]]
        total[qtype] += 1
        right[qtype] += answer.lower() in [str(c["answer"]).lower() for c in entry["candidates"][:k]]
    return sum(right.values()) / sum(total.values()), {t: right[t] / total[t] for t in total}


@pytest.fixture(scope="module", params=["decoder", "score"])
def open_run(request, trained_run, trained_decoder, tmp_path_factory) -> tuple[dict, Path, object]:
    """Each head's tiny run answered open-ended on test (top-3): metrics, output folder, config."""
    overrides = trained_decoder if request.param == "decoder" else trained_run
    src = Path(next(o for o in overrides if o.startswith("run.dir=")).partition("=")[2])
    dest = tmp_path_factory.mktemp(f"open_{request.param}") / "run"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("eval", "inspect"))
    cfg = load_config(None, [*(o for o in overrides if not o.startswith("run.dir=")), f"run.dir={dest}",
                             "eval.split=test", "eval.mode=open", "eval.topk=3"])  # fmt: skip
    save_config(cfg)
    return evaluate_open(Run(cfg), Accelerator(cpu=True)), dest / "eval" / "test_open", cfg


@pytest.mark.slow
def test_the_toolkits_open_rule_scores_the_results_file_as_metrics_says(open_run) -> None:
    metrics, out, cfg = open_run
    results = json.loads((out / "predictions.json").read_text())
    test = load_telling(cfg.data.annotations, cfg.data.images).split("test")
    truth = {q.qa_id: (q.answer, q.type) for q in test}
    assert sorted(e["qa_id"] for e in results) == sorted(truth), "every test qa_id exactly once"
    assert all(1 <= len(e["candidates"]) <= 3 for e in results) and metrics["topk"] == 3
    for k, key in ((3, "accuracy"), (1, "top1")):
        accuracy, per_type = toolkit_open(results, truth, k)
        assert metrics[key] == pytest.approx(accuracy)
        assert metrics["per_type" if k == 3 else "per_type_top1"] == pytest.approx(per_type)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    rows = [json.loads(line) for line in (out / "per_question.jsonl").read_text().splitlines()]
    assert [r["answers"][0]["answer"] for r in rows] == [e["candidates"][0]["answer"] for e in results]
    assert all(r["answers"][0]["score"] >= r["answers"][-1]["score"] for r in rows), "best first"


def test_the_prior_is_the_types_most_frequent_training_answers(open_run) -> None:
    metrics, _, cfg = open_run
    ds = load_telling(cfg.data.annotations, cfg.data.images)
    by_type: dict[str, Counter] = {}
    for q in ds.split("train"):
        by_type.setdefault(q.type, Counter())[q.answer.lower()] += 1
    test = ds.split("test")
    hits = [q.answer.lower() in [a for a, _ in by_type[q.type].most_common(3)] for q in test]
    assert metrics["prior"]["accuracy"] == pytest.approx(np.mean(hits))
    assert metrics["prior"]["n"] == metrics["n"] == len(test)


def test_open_mode_is_refused_for_pointing(trained_run) -> None:
    cfg = load_config(None, [*trained_run, "data.task=pointing", "eval.mode=open"])
    with pytest.raises(VQAError, match=r"eval\.mode=open is the telling protocol"):
        evaluate_open(Run(cfg), Accelerator(cpu=True))


def qa(i: int, answer: str, qtype: str = "what") -> QA:
    return QA(i, 1, "train", qtype, "What is it?", answer, ("A.", "B.", "C."))


def test_answer_pool_counts_lowercase_and_keeps_the_commonest_spelling() -> None:
    pool = answer_pool([qa(1, "Red."), qa(2, "red."), qa(3, "Red."), qa(4, "Blue."), qa(5, "Two.", "how")])
    assert pool == {"what": ["Red.", "Blue."], "how": ["Two."]}


def test_open_scores_count_a_hit_in_the_first_k_lowercase() -> None:
    qas = [qa(1, "Red."), qa(2, "Blue."), qa(3, "Two.", "how")]
    got = open_scores({1: ["red.", "Blue."], 2: ["Red.", "BLUE."], 3: ["Three.", "Four."]}, qas, 2)
    assert (got["top1"], got["accuracy"]) == pytest.approx((1 / 3, 2 / 3))
    assert got["per_type"] == {"how": 0.0, "what": 1.0} and got["per_type_top1"] == {"how": 0.0, "what": 0.5}


@pytest.mark.parametrize("answer", ["Three.", "On the man's head.", "Red, white and blue.", "At night."])
def test_a_generated_answer_is_written_as_the_dataset_writes_it(answer) -> None:
    tok = build_tokenizer([qa(1, answer)], min_freq=1)
    ids = token_ids(tok, [answer], 32)[0]
    assert detokenize(tok, [*ids, 0, 5]) == answer, "the words up to the end, punctuation against its word"


def test_predictor_generates_what_open_eval_answers_with_a_map_per_word(open_run) -> None:
    from vqa import Predictor

    metrics, out, cfg = open_run
    p = Predictor.from_run(cfg.run.dir, device="cpu")
    ds = load_telling(cfg.data.annotations, cfg.data.images)
    rows = [json.loads(line) for line in (out / "per_question.jsonl").read_text().splitlines()][:4]
    qas = ds.qa_by_id()
    if metrics["model_head"] == "score":
        with pytest.raises(VQAError, match=r"model\.head=decoder"):
            p.generate(ds.image_path(qas[rows[0]["qa_id"]].image_id), rows[0]["question"])
        return
    for r in rows:
        got = p.generate(ds.image_path(qas[r["qa_id"]].image_id), r["question"], k=3)
        assert [g.answer for g in got] == [a["answer"] for a in r["answers"]], "make eval's open answers, in order"
        np.testing.assert_allclose([g.score for g in got], [a["score"] for a in r["answers"]], atol=1e-4)
        for g in got:
            assert g.words[-1] == "<end>" and g.attention_words.shape == (len(g.words), 3, 3)
            assert 0 <= g.probability <= 1 and g.probability == pytest.approx(np.exp(g.score * len(g.words)))
        mc = p.predict(ds.image_path(qas[r["qa_id"]].image_id), r["question"], list(qas[r["qa_id"]].candidates))
        assert mc.attention_words.shape[:2] == (4, max(len(w) for w in mc.words))


def test_decoder_multiple_choice_agrees_with_eval(trained_decoder, tmp_path) -> None:
    from vqa import Predictor

    cfg = load_config(None, [*(o for o in trained_decoder if not o.startswith("run.dir=")),
                             f"run.dir={tmp_path / 'run'}", "eval.split=test"])  # fmt: skip
    src = Path(next(o for o in trained_decoder if o.startswith("run.dir=")).partition("=")[2])
    shutil.copytree(src, tmp_path / "run", ignore=shutil.ignore_patterns("eval", "inspect"))
    save_config(cfg)
    metrics = evaluate(cfg, Accelerator(cpu=True))
    assert metrics["model_variant"] == "attention" and 0 <= metrics["accuracy"] <= 1
    rows = [json.loads(x) for x in (tmp_path / "run/eval/test/per_question.jsonl").read_text().splitlines()][:6]
    ds = load_telling(cfg.data.annotations, cfg.data.images)
    qas = ds.qa_by_id()
    p = Predictor.from_run(tmp_path / "run", device="cpu")
    for r in rows:
        got = p.predict(ds.image_path(qas[r["qa_id"]].image_id), r["question"], [c["answer"] for c in r["candidates"]])
        np.testing.assert_allclose(got.scores, [c["score"] for c in r["candidates"]], rtol=1e-4, atol=1e-4)
        assert (got.scores <= 0).all(), "mean log-likelihoods"
