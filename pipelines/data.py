"""`python pipelines/data.py --config FILE [section.key=value ...]` in a checkout: the `data` command,
the same code as `vqa7w data` (vqa/commands/data.py)."""

import sys

from vqa.commands import main

if __name__ == "__main__":
    sys.exit(main(["data", *sys.argv[1:]]))
