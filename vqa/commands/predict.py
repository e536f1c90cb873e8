"""Answer a multiple-choice question about any JPEG/PNG with a trained run, and draw where it looked.

    vqa7w predict --config configs/default.yaml --image photo.jpg \
        --question "Where is the red circle?" --choices "On the left." "On the right." "At the top." "In the middle."

A pointing run (data.task=pointing) takes boxes in the image's pixels: --choices 10,20,50,40 80,20,40,40 ...
A decoder run (model.head=decoder) also writes its own 3 best answers and <image>_words.png: a map per word.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import cli
from ..common.errors import VQAError
from ..common.files import atomic_write_bytes
from ..report.inspect import predict_one


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, type=Path, help="a JPEG or PNG file")
    parser.add_argument("--question", required=True)
    parser.add_argument("--choices", required=True, nargs="+",
                        help="the candidate answers (2 or more); for a pointing run, boxes 'x,y,width,height'")
    parser.add_argument("--out", type=Path, help="overlay PNG (default: <run.dir>/predict/<image>.png)")


def main(argv: Sequence[str] | None = None) -> None:
    run, args = cli.parse(__doc__.splitlines()[0], argv, _flags)
    if len(args.choices) < 2:
        raise VQAError("give at least 2 --choices")
    if len({c.strip().lower() for c in args.choices}) != len(args.choices):
        raise VQAError("--choices must differ (case-insensitively)")
    out = predict_one(run, args.image, args.question, args.choices)
    for rank, (choice, prob, score) in enumerate(out["ranked"], 1):
        print(f"{rank}. {choice:<40} p={prob:.3f}  score={score:.3f}")
    path = args.out or run.dir / "predict" / f"{args.image.stem}.png"
    atomic_write_bytes(path, out["png"])
    print(f"attention overlay -> {path}")
    for rank, g in enumerate(out["generated"], 1):  # a decoder run (model.head=decoder) also answers on its own
        print(f"wrote {rank}. {g.answer:<34} p={g.probability:.3f}  score={g.score:.3f}")
    if out["words_png"]:
        words = path.with_name(f"{path.stem}_words.png")
        atomic_write_bytes(words, out["words_png"])
        print(f"attention per word (each choice, each written answer) -> {words}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
