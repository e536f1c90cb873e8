"""`python pipelines/features.py --config FILE [section.key=value ...]` in a checkout: the `features` command,
the same code as `vqa7w features` (vqa/commands/features.py)."""

import sys

from vqa.commands import main

if __name__ == "__main__":
    sys.exit(main(["features", *sys.argv[1:]]))
