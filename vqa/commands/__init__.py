"""The stages as commands: ``vqa7w <command> --config FILE [section.key=value ...]`` (the console script of an
installed package), ``python -m vqa.commands <command> ...`` (what ``make`` and ``accelerate launch -m`` run), and
``python pipelines/<stage>.py ...`` in a checkout: three doors to the same ``main(argv)`` of one module each.

A command's module is imported only when it is run, so that ``vqa7w --help`` answers at once.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..cli import run

# command -> (module under vqa.commands, what it does); in pipeline order
COMMANDS = {
    "data": ("data", "write the synthetic 7W world in the official Visual7W layout"),
    "features": ("features", "extract the CNN grid of every image into <run.dir>/features/ (resumable)"),
    "train": ("train", "train on the train split, keep the best epoch on val (resumable)"),
    "eval": ("evaluate", "score a split in the official protocol -> <run.dir>/eval/<split>/"),
    "inspect": ("report", "attention maps per question and the explorer -> <run.dir>/inspect/"),
    "predict": ("predict", "answer a question about your own image with a trained run"),
    "serve": ("serve", "a local page (127.0.0.1) to ask a trained run about a photo"),
    "bench": ("bench", "speed and memory ratios of this machine, measured in one run"),
    "demo": ("demo", "the offline demo end to end, timed (runs `make` targets: needs a checkout)"),
}


def usage() -> str:
    rows = "\n".join(f"  {name:<9} {text}" for name, (_, text) in COMMANDS.items())
    return (f"usage: vqa7w <command> --config FILE [section.key=value ...]   (vqa7w {__version__})\n\n"
            f"commands:\n{rows}\n\n`vqa7w <command> --help` shows a command's own options.")


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default: the process's) to its command; the command's exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] == "--version":
        print(__version__)
        return 0
    if args[0] not in COMMANDS:
        print(f"vqa7w: unknown command '{args[0]}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__name__}.{COMMANDS[args[0]][0]}")
    sys.argv[0] = f"vqa7w {args[0]}"  # argparse's prog in the command's --help and its errors
    return run(module.main, args[1:])
