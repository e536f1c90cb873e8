"""`make data`: write the synthetic 7W world in the official Visual7W layout to the config's data paths.

    vqa7w data --config configs/default.yaml [synth.train_images=400 ...] [--force]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence

from .. import cli
from ..config import save_config
from ..data import synth


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="rebuild even if an identical dataset exists")


def main(argv: Sequence[str] | None = None) -> None:
    run, args = cli.parse(__doc__.splitlines()[0], argv, _flags)
    cfg, start = run.cfg, time.perf_counter()
    result = synth.write_dataset(cfg, force=args.force)
    dataset = run.dataset  # the loader must accept what we wrote
    save_config(cfg)
    splits = {s: len(dataset.split(s)) for s in ("train", "val", "test")}
    types = Counter(q.type for q in dataset.qa)
    prior = run.task.prior_baseline(dataset, dataset.split("train"), dataset.split("test"))
    state = "wrote" if result["written"] else "up to date (use --force to rebuild):"
    took = time.perf_counter() - start
    print(f"{state} {cfg.data.annotations}: {result['images']} images, {len(dataset.qa)} QA in {took:.1f}s")
    print(f"  QA by split: {splits}; by type: {dict(sorted(types.items()))}")
    print(f"  {run.task.baseline_label} on test: {prior['accuracy']:.3f} (chance 0.25)")


if __name__ == "__main__":
    sys.exit(cli.run(main))
