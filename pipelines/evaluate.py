"""`python pipelines/evaluate.py --config FILE [section.key=value ...]` in a checkout: the `eval` command,
the same code as `vqa7w eval` (vqa/commands/evaluate.py)."""

import sys

from vqa.commands import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
