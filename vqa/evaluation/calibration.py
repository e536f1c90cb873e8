"""Probabilities that mean what they say: one temperature fitted on val (Guo et al., ICML 2017), and the
expected calibration error that says how far they are from it.

A network trained with cross-entropy grows its scores' scale until its training answers are certain: its softmax
then says 0.99 for answers that are right far less often. Dividing every score by one temperature T > 0 keeps
each ranking (the accuracy does not move) and, with T fitted to minimise the val split's negative
log-likelihood, makes "0.8" mean right about 80 % of the time. T is stored in the best checkpoint's meta.json;
every probability shown to people (``Predictor``, the explorer, the live page, the report) is
softmax(scores / T). Scores written to files (``predictions.json``, ``per_question.jsonl``) stay raw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

BINS = 10  # confidence bins of the expected calibration error and of the reliability diagram


def probabilities(scores: Any, temperature: float = 1.0) -> np.ndarray:
    """[.., K] raw scores -> softmax(scores / T) over the last axis, as numpy."""
    return torch.softmax(torch.as_tensor(np.asarray(scores), dtype=torch.float64) / temperature, -1).numpy()


def temperature_of(meta: dict[str, Any]) -> float:
    """A checkpoint's fitted temperature (1.0 for one trained before calibration, or never calibrated)."""
    t = meta.get("calibration", {}).get("temperature", 1.0)
    return float(t) if isinstance(t, (int, float)) and t > 0 else 1.0


def fit_temperature(scores: np.ndarray, label: np.ndarray) -> float:
    """The T > 0 that minimises the mean NLL of softmax(scores / T) at the true candidates: [N, K] scores, [N]
    labels. Convex in 1/T, so a bracketing search on log T finds the one minimum; T is kept in [0.05, 20]."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    y = torch.as_tensor(label, dtype=torch.long)

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(s / np.exp(log_t), y))

    lo, hi = np.log(0.05), np.log(20.0)
    for _ in range(80):  # golden-section search: 1e-16 of the bracket
        a, b = hi - 0.618 * (hi - lo), lo + 0.618 * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def reliability(probs: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    """The chosen answers' confidence against their accuracy, in ``BINS`` equal-width bins: ``{"ece", "bins":
    [{"lo", "hi", "n", "confidence", "accuracy"}]}``. ECE = sum over bins of n_b / N |accuracy_b - confidence_b|.

    The confidence is the top probability; ``correct`` counts a tie at the top wrong, as the accuracy does."""
    conf = probs.max(-1)
    edges = np.linspace(0.0, 1.0, BINS + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, BINS - 1)
    bins, ece = [], 0.0
    for b in range(BINS):
        inside = which == b
        n = int(inside.sum())
        c = float(conf[inside].mean()) if n else None
        a = float(correct[inside].mean()) if n else None
        if n:
            ece += n / len(conf) * abs(a - c)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n, "confidence": c, "accuracy": a})
    return {"ece": float(ece), "bins": bins}


def calibration_summary(scores: np.ndarray, label: np.ndarray, correct: np.ndarray,
                        temperature: float) -> dict[str, Any]:  # fmt: skip
    """ECE and reliability bins before (T = 1) and after the temperature, for ``metrics.json`` and the report."""
    before, after = (reliability(probabilities(scores, t), correct) for t in (1.0, temperature))
    nll = [float(-np.log(probabilities(scores, t)[np.arange(len(label)), label] + 1e-12).mean())
           for t in (1.0, temperature)]  # fmt: skip
    return {"temperature": temperature, "ece_before": before["ece"], "ece_after": after["ece"],
            "nll_before": nll[0], "nll_after": nll[1], "bins_before": before["bins"], "bins_after": after["bins"]}
