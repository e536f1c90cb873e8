"""The training curves: loss and val accuracy per epoch, drawn from ``train_log.jsonl`` into ``curves.png``."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a training machine

import matplotlib.pyplot as plt

from ..common.files import save_figure


def curves(log_path: Path, out: Path) -> None:
    """Loss and val accuracy per epoch, from train_log.jsonl."""
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows], marker="o")
    ax1.set(xlabel="epoch", ylabel="train loss", title="training loss")
    ax2.plot([r["epoch"] for r in rows], [r["val_accuracy"] for r in rows], marker="o", label="overall")
    for t in rows[-1]["val_per_type"]:
        ax2.plot([r["epoch"] for r in rows], [r["val_per_type"].get(t) for r in rows], alpha=0.6, label=t)
    ax2.axhline(0.25, color="grey", linestyle=":", label="chance")
    ax2.set(xlabel="epoch", ylabel="val accuracy", title="validation accuracy", ylim=(0, 1))
    ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(out, fig, dpi=110)
