"""`make demo`: the offline demo end to end, each stage a `make` target, timed; the times close the output.

    vqa7w demo --config configs/default.yaml [section.key=value ...]

Why a script and not a make recipe: a person waiting for the demo wants to know where the minutes went, and a
failed stage must stop the chain with its own message; a subprocess per stage keeps each one exactly what
`make <stage>` runs. The times are also written to <run.dir>/demo_times.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .. import cli
from ..common.files import atomic_write_text
from ..evaluation.evaluate import read_metrics
from ..run import Run

# (label, make target, extra ARGS): data -> features -> train -> eval (val) -> blind baseline -> eval (test) -> inspect
STAGES = (
    ("data", "data", ""),
    ("features", "features", ""),
    ("train", "train", ""),
    ("eval (val)", "eval", "eval.split=val"),
    ("blind baseline", "baselines", None),  # BASELINES=blind
    ("eval (test)", "eval", "eval.split=test"),
    ("inspect", "inspect", ""),
)


def stage_command(target: str, extra: str | None, config: str, args: str) -> list[str]:
    """The `make` call of one stage (the data stage takes no ARGS: the demo's world is the config's)."""
    cmd = ["make", "--no-print-directory", target, f"CONFIG={config}"]
    if target != "data":
        cmd.append(f"ARGS={' '.join(a for a in (args, extra or '') if a)}")
    return [*cmd, "BASELINES=blind"] if extra is None else cmd


def summary(times: Sequence[tuple[str, float]]) -> str:
    """The closing table: each stage's minutes and share, and the total."""
    total = sum(s for _, s in times) or 1.0
    lines = ["demo stage times:"] + [f"  {name:<16}{s / 60:>6.1f} min  {100 * s / total:>3.0f} %" for name, s in times]
    return "\n".join([*lines, f"  {'total':<16}{total / 60:>6.1f} min"])


def accuracy_text(metrics_file: Path) -> str:
    """A run's accuracy as its eval stage wrote it, or '?' (the figure is for reading, never for a decision)."""
    accuracy = (read_metrics(metrics_file) or {}).get("accuracy")
    return f"{accuracy:.3f}" if isinstance(accuracy, float) else "?"


def results(run: Run) -> str:
    """The demo's number beside its honest baseline, and where to look next: what a person waited 20 minutes for."""
    mine = run.eval_dir("test") / "metrics.json"
    blind = accuracy_text(run.baseline_dir("blind") / "eval" / "test" / "metrics.json")
    return (f"test accuracy {accuracy_text(mine)} (the blind baseline: {blind}, chance 0.25): {mine}\n"
            f"the attention explorer: {run.report_dir / 'explorer.html'}")


def main(argv: Sequence[str] | None = None) -> None:
    run, args = cli.parse(__doc__.splitlines()[0], argv)  # a config error stops here, before any stage
    times: list[tuple[str, float]] = []
    for name, target, extra in STAGES:
        start = time.perf_counter()
        code = subprocess.call(stage_command(target, extra, args.config, " ".join(args.overrides)))
        times.append((name, time.perf_counter() - start))
        if code != 0:
            print(summary(times), f"\nthe demo stopped at stage '{name}' (exit {code}): see its message above",
                  file=sys.stderr)  # fmt: skip
            sys.exit(code)
    print(summary(times))
    print(results(run))
    times_file = run.dir / "demo_times.json"
    atomic_write_text(times_file, json.dumps({n: round(s, 1) for n, s in times}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(cli.run(main))
