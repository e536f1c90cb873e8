"""Official Visual7W multiple-choice scoring, reimplemented exactly, plus the honest tie rule.

The toolkit's ``evaluate.py`` reads a results file ``[{"qa_id", "question", "candidates": [{"answer"}]}]``, takes
``candidates[0]`` of each entry, and counts it correct iff ``str(c).lower() == str(answer).lower()`` (punctuation
kept); accuracy = correct / number of entries; per-type accuracy by the QA's ``type``; an entry whose qa_id is not
in the split aborts the evaluation. We write the chosen candidate verbatim so that the toolkit agrees with us.

Ties: the Lua evaluator resolves a tie to the true answer (optimistic). We count it wrong, and make the results file
say so too: among tied top candidates, a wrong one is written first.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .data import QA
from .errors import ScoringError
from .io import atomic_write_json


def rank_candidates(candidates: Sequence[str], scores: Sequence[float], answer: str) -> list[str]:
    """Candidates by descending score; if the top score is tied and the answer is among the tied, a wrong
    candidate goes first (ties count wrong), so the results file and our metrics agree."""
    if len(candidates) != len(scores):
        raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores")
    order = sorted(range(len(candidates)), key=lambda i: -scores[i])  # stable: equal scores keep input order
    top = [i for i in order if scores[i] == scores[order[0]]]
    if len(top) > 1:
        wrong = [i for i in top if candidates[i].lower() != answer.lower()]
        if wrong:
            order.remove(wrong[0])
            order.insert(0, wrong[0])
    return [candidates[i] for i in order]


def result_entry(qa: QA, ranked: Sequence[str]) -> dict[str, Any]:
    """One entry of the toolkit's results format."""
    return {"qa_id": qa.qa_id, "question": qa.question, "candidates": [{"answer": c} for c in ranked]}


def write_results(path: str | Path, entries: Iterable[Mapping[str, Any]]) -> Path:
    return atomic_write_json(path, list(entries), indent=None)


def score_results(results: Any, split_qa: Sequence[QA], split: str = "?") -> dict[str, Any]:
    """Score a parsed results list against the QA of one split, with the toolkit's rules.

    Returns ``{"n", "correct", "accuracy", "per_type", "per_type_n", "missing", "duplicates"}``; ``missing``
    counts QA of the split absent from the results (the toolkit ignores them; we report them).
    """
    if not isinstance(results, list):
        raise ScoringError(f"a results file must hold a JSON list of entries, got {type(results).__name__}")
    by_id = {q.qa_id: q for q in split_qa}
    problems = []
    total: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    seen: Counter[int] = Counter()
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
        seen[qa.qa_id] += 1
        total[qa.type] += 1
        first = candidates[0] if candidates else None
        if isinstance(first, dict) and str(first.get("answer")).lower() == str(qa.answer).lower():
            correct[qa.type] += 1
    if problems:
        raise ScoringError(f"{len(problems)} problem(s) in the results:", problems)
    n = sum(total.values())
    if n == 0:
        raise ScoringError("the results file holds no entries")
    return {
        "n": n,
        "correct": sum(correct.values()),
        "accuracy": sum(correct.values()) / n,
        "per_type": {t: correct[t] / total[t] for t in sorted(total)},
        "per_type_n": {t: total[t] for t in sorted(total)},
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


def per_type_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """A text table: one row per named result (``{"name": metrics}``), columns overall + per type."""
    types = sorted({t for m in rows.values() for t in m.get("per_type", {})})
    head = f"{'':<16}{'n':>7}{'overall':>9}" + "".join(f"{t:>8}" for t in types)
    lines = [head]
    for name, m in rows.items():
        per = defaultdict(lambda: float("nan"), m.get("per_type", {}))
        lines.append(f"{name:<16}{m['n']:>7}{m['accuracy']:>9.3f}" + "".join(f"{per[t]:>8.3f}" for t in types))
    return "\n".join(lines)
