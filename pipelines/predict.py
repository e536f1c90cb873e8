"""`python pipelines/predict.py --config FILE [section.key=value ...]` in a checkout: the `predict` command,
the same code as `vqa7w predict` (vqa/commands/predict.py)."""

import sys

from vqa.commands import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
