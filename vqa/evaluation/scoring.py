"""Official Visual7W multiple-choice scoring, reimplemented exactly, plus the honest tie rule.

The toolkit's ``evaluate.py`` reads a results file ``[{"qa_id", "question", "candidates": [{"answer"}]}]``, takes
``candidates[0]`` of each entry, and counts it correct iff ``str(c).lower() == str(answer).lower()`` (punctuation
kept); accuracy = correct / number of entries; per-type accuracy by the QA's ``type``; an entry whose qa_id is not
in the split aborts the evaluation. We write the chosen candidate verbatim so that the toolkit agrees with us.

Ties: the Lua evaluator resolves a tie to the true answer (optimistic). We count it wrong, and make the results file
say so too: among tied top candidates, a wrong one is written first. ``rank_order`` is the one place that rule lives:
``rank_candidates`` (results file), ``choose`` (inspect, predict) and ``strictly_best`` (its vectorised twin, used by
``evaluate.accuracy_of``) all give the same verdict. A NaN score counts as -inf.

Question families: like the VQA evaluation's "question types", accuracy is also reported by the question's leading
words (``question_family``, in ``data/families.py``), a finer cut than Visual7W's seven W types ("how many" is not "how
is").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import ScoringError
from ..common.files import atomic_write_json
from ..data.families import question_family
from ..data.visual7w import QA


def _key(score: float) -> float:
    """Sort key: descending score, NaN as -inf (a NaN compares false with everything and would break sorting)."""
    return np.inf if np.isnan(score) else -score


def rank_order(candidates: Sequence[str], scores: Sequence[float], answer: str | None = None) -> list[int]:
    """Candidate indices by descending score (stable: equal scores keep input order). With ``answer`` known, a top
    tie that includes the answer puts a wrong candidate first: a tie never counts as correct."""
    if len(candidates) != len(scores):
        raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores")
    order = sorted(range(len(candidates)), key=lambda i: _key(float(scores[i])))
    top = [i for i in order if _key(float(scores[i])) == _key(float(scores[order[0]]))]
    if answer is not None and len(top) > 1:
        wrong = [i for i in top if candidates[i].lower() != answer.lower()]
        if wrong:
            order.remove(wrong[0])
            order.insert(0, wrong[0])
    return order


def rank_candidates(candidates: Sequence[str], scores: Sequence[float], answer: str) -> list[str]:
    """Candidates by descending score; if the top score is tied and the answer is among the tied, a wrong
    candidate goes first (ties count wrong), so the results file and our metrics agree."""
    return [candidates[i] for i in rank_order(candidates, scores, answer)]


def choose(candidates: Sequence[str], scores: Sequence[float], answer: str | None = None) -> int:
    """Index of the model's choice under the tie rule (a wrong candidate on a top tie when ``answer`` is known, the
    first top candidate otherwise): what the results file, the metrics and the inspect PNGs all call "chosen"."""
    return rank_order(candidates, scores, answer)[0]


def strictly_best(scores: np.ndarray, true_pos: np.ndarray) -> np.ndarray:
    """Vectorised ``choose(...) == answer`` (kept in step with it by a test): ``scores [N, K]``, ``true_pos [N]``
    (the answer's column) -> bool [N], True iff the answer's score beats every other one strictly (a tie is wrong;
    NaN counts as -inf, as in ``rank_order``)."""
    scores = np.where(np.isnan(scores), -np.inf, np.asarray(scores, dtype=np.float64))  # [N, K]
    if scores.shape[1] == 1:
        return np.ones(len(scores), dtype=bool)  # a lone candidate is always chosen
    rows = np.arange(len(scores))
    true_score = scores[rows, true_pos]  # [N]
    others = scores.copy()
    others[rows, true_pos] = -np.inf
    return true_score > others.max(axis=1)


def result_entry(qa: QA, ranked: Sequence[Any]) -> dict[str, Any]:
    """One entry of the toolkit's results format, candidates as the task writes them (``Task.result_answer``:
    pointing's are the integer box ids of the official file; the toolkit compares ``str()`` of both sides)."""
    return {"qa_id": qa.qa_id, "question": qa.question, "candidates": [{"answer": c} for c in ranked]}


def write_results(path: str | Path, entries: Iterable[Mapping[str, Any]]) -> Path:
    return atomic_write_json(path, list(entries), indent=None)


def _entries(results: Any, by_id: dict[int, QA], split: str) -> list[tuple[QA, list[Any]]]:
    """Each results entry's QA and ranked candidates; every malformed or unknown entry is named at once."""
    if not isinstance(results, list):
        raise ScoringError(f"a results file must hold a JSON list of entries, got {type(results).__name__}")
    problems, out = [], []
    for i, entry in enumerate(results):
        if not isinstance(entry, dict) or "qa_id" not in entry:
            problems.append(f"entry {i}: no 'qa_id'")
            continue
        qa = by_id.get(entry["qa_id"])
        if qa is None:
            problems.append(f"entry {i}: cannot find QA #{entry['qa_id']} in split '{split}'")
            continue
        candidates = entry.get("candidates")
        if not isinstance(candidates, list):
            problems.append(f"entry {i} (qa_id {qa.qa_id}): 'candidates' must be a list")
            continue
        out.append((qa, candidates))
    if problems:
        raise ScoringError(f"{len(problems)} problem(s) in the results:", problems)
    return out


def score_results(results: Any, split_qa: Sequence[QA], split: str = "?") -> dict[str, Any]:
    """Score a parsed results list against the QA of one split, with the toolkit's rules.

    Returns ``{"n", "correct", "accuracy", "per_type", "per_type_n", "per_question_type", "per_question_type_n",
    "missing", "duplicates"}``; ``per_question_type`` is keyed by ``question_family``; ``missing`` counts QA of the
    split absent from the results (the toolkit ignores them; we report them).
    """
    seen: Counter[int] = Counter()
    total: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    family_total: Counter[str] = Counter()
    family_correct: Counter[str] = Counter()
    for qa, candidates in _entries(results, {q.qa_id: q for q in split_qa}, split):
        seen[qa.qa_id] += 1
        family = question_family(qa.question)
        total[qa.type] += 1
        family_total[family] += 1
        first = candidates[0] if candidates else None
        if isinstance(first, dict) and str(first.get("answer")).lower() == str(qa.answer).lower():
            correct[qa.type] += 1
            family_correct[family] += 1
    n = sum(total.values())
    if n == 0:
        raise ScoringError("the results file holds no entries")
    return {
        "n": n,
        "correct": sum(correct.values()),
        "accuracy": sum(correct.values()) / n,
        "per_type": {t: correct[t] / total[t] for t in sorted(total)},
        "per_type_n": {t: total[t] for t in sorted(total)},
        "per_question_type": {f: family_correct[f] / family_total[f] for f in sorted(family_total)},
        "per_question_type_n": {f: family_total[f] for f in sorted(family_total)},
        "missing": sum(1 for q in split_qa if q.qa_id not in seen),
        "duplicates": sum(c - 1 for c in seen.values() if c > 1),
    }


def answer_prior_baseline(train: Sequence[QA], test: Sequence[QA]) -> dict[str, Any]:
    """The blind 'most frequent answer' baseline: pick the candidate seen most often as a train answer.

    It measures how much the answer strings alone give away; a good dataset keeps it near chance (0.25).
    Ties count wrong, as everywhere here.
    """
    prior = Counter(q.answer.lower() for q in train)
    entries = []
    for q in test:
        scores = [float(prior[c.lower()]) for c in q.candidates]
        entries.append(result_entry(q, rank_candidates(q.candidates, scores, q.answer)))
    return score_results(entries, test, "test")


def _num(value: Any) -> float:
    """A metric read from a file, or NaN when it is absent or not a number (old or hand-edited metrics files)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def _dict(m: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``m[key]`` when it is a mapping, else empty: a table must not die on a metrics file of an older version."""
    value = m.get(key) if isinstance(m, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def per_type_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """A text table: one row per named result (``{"name": metrics}``), columns overall + per type.
    Missing numbers show as nan rather than failing: old metrics files lack some keys."""
    types = sorted({t for m in rows.values() for t in _dict(m, "per_type")})
    head = f"{'':<16}{'n':>7}{'overall':>9}" + "".join(f"{t:>8}" for t in types)
    lines = [head]
    for name, m in rows.items():
        per = _dict(m, "per_type")
        n = m.get("n", "?") if isinstance(m, Mapping) else "?"
        lines.append(f"{name:<16}{n!s:>7}{_num(m.get('accuracy') if isinstance(m, Mapping) else None):>9.3f}"
                     + "".join(f"{_num(per.get(t)):>8.3f}" for t in types))  # fmt: skip
    return "\n".join(lines)


def per_question_type_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """A text table by question family (VQA-style question types): one line per family (most frequent first) with
    its count in the first run and the accuracy of every run; "-" where a run has no such number."""
    first = next(iter(rows.values()), {})
    counts = {f: n for f, n in _dict(first, "per_question_type_n").items() if isinstance(n, int)}
    families = sorted({f for m in rows.values() for f in _dict(m, "per_question_type")},
                      key=lambda f: (-counts.get(f, 0), f))  # fmt: skip
    width = max([len("question type"), *(len(f) for f in families)]) + 2
    lines = [f"{'question type':<{width}}{'n':>7}" + "".join(f"{name:>16}" for name in rows)]
    for f in families:
        cells = []
        for m in rows.values():
            value = _num(_dict(m, "per_question_type").get(f))
            cells.append(f"{'-' if np.isnan(value) else f'{value:.3f}':>16}")
        lines.append(f"{f:<{width}}{counts.get(f, '-')!s:>7}" + "".join(cells))
    return "\n".join(lines)
