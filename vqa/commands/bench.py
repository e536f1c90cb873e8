"""`make bench`: extraction, training and memory figures of this machine, as ratios measured in one run.

    vqa7w bench --config configs/default.yaml [--only extraction|training|memory] [--repeats 3]

Needs the config's dataset for the extraction part (`make data`). Backbones use random weights and the training
parts a synthetic Visual7W-shape store (2048 x 14 x 14 fp16): speed does not depend on the numbers. Writes
<run.dir>/bench/bench.json and bench.png; --profile also writes torch.profiler tables next to them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import cli
from ..bench import inputs, stage


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", choices=["all", "extraction", "training", "memory"], default="all")
    parser.add_argument("--images", type=int, default=256, help="images for efficientnet_lite0@224")
    parser.add_argument("--heavy-images", type=int, default=32, help="images for resnet152@448")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (the fastest counts)")
    parser.add_argument("--questions", type=int, default=512, help="questions per timed training/eval pass")
    parser.add_argument("--questions-per-image", type=float, default=4.86,
                        help="Visual7W telling's train split: 69,817 questions on 14,366 images")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=32, help="training batch for the training/memory parts")
    parser.add_argument("--store-images", type=int, default=512, help="S: images in the smaller synthetic store")
    parser.add_argument("--grid", type=int, nargs=3, default=inputs.VISUAL7W_GRID, metavar=("C", "H", "W"))
    parser.add_argument("--no-compile", action="store_true", help="skip the features.compile=true extraction row")
    parser.add_argument("--profile", action="store_true", help="write torch.profiler tables of extraction/training")


def main(argv: Sequence[str] | None = None) -> None:
    run, args = cli.parse(__doc__.splitlines()[0], argv, _flags)
    stage.run(run.cfg, args)


if __name__ == "__main__":
    sys.exit(cli.run(main))
