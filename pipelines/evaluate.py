"""`make eval`: score a split with the trained model in the official Visual7W protocol (+ grounding metrics).

    python pipelines/evaluate.py --config configs/default.yaml [eval.split=test] [eval.checkpoint=best|last|PATH]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vqa import cli
from vqa.accel import make_accelerator
from vqa.evaluate import comparison_table, evaluate, grounding_line, skipped_line


def main(argv: Sequence[str] | None = None) -> None:
    run, _ = cli.parse(__doc__.splitlines()[0], argv)
    accelerator = make_accelerator()
    metrics = evaluate(run, accelerator)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # tear the process group down before exit (an abort at exit otherwise)
    if metrics is None:
        return
    split = run.cfg.eval.split
    print(f"{split}: accuracy {metrics['accuracy']:.4f} on {metrics['n']} questions -> {run.eval_dir(split)}/")
    lines = [skipped_line(metrics), comparison_table(run, metrics), grounding_line(metrics.get("grounding"))]
    print("\n".join(line for line in lines if line))


if __name__ == "__main__":
    sys.exit(cli.run(main))
