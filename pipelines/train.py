"""`python pipelines/train.py --config FILE [section.key=value ...]` in a checkout: the `train` command,
the same code as `vqa7w train` (vqa/commands/train.py)."""

import sys

from vqa.commands import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
