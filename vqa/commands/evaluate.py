"""`make eval`: score a split with the trained model in the official Visual7W protocol (+ grounding metrics).

    vqa7w eval --config configs/default.yaml [eval.split=test] [eval.checkpoint=best|last|PATH]
                                 [eval.mode=open eval.topk=5]   (open-ended: the model answers, no candidates)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .. import cli
from ..accel import make_accelerator
from ..evaluation.evaluate import comparison_table, evaluate, grounding_line, skipped_line
from ..evaluation.open_ended import evaluate_open, open_lines


def main(argv: Sequence[str] | None = None) -> None:
    run, _ = cli.parse(__doc__.splitlines()[0], argv)
    accelerator = make_accelerator()
    open_ended = run.cfg.eval.mode == "open"
    metrics = (evaluate_open if open_ended else evaluate)(run, accelerator)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # tear the process group down before exit (an abort at exit otherwise)
    if metrics is None:
        return
    split = run.cfg.eval.split
    if open_ended:
        print(f"{split} open-ended: top-{metrics['topk']} {metrics['accuracy']:.4f}, top-1 {metrics['top1']:.4f} on "
              f"{metrics['n']} questions -> {run.open_dir(split)}/")
        print("\n".join(open_lines(metrics)))
        return
    print(f"{split}: accuracy {metrics['accuracy']:.4f} on {metrics['n']} questions -> {run.eval_dir(split)}/")
    lines = [skipped_line(metrics), comparison_table(run, metrics), grounding_line(metrics.get("grounding"))]
    print("\n".join(line for line in lines if line))


if __name__ == "__main__":
    sys.exit(cli.run(main))
