"""`python pipelines/report.py --config FILE [section.key=value ...]` in a checkout: the `inspect` command,
the same code as `vqa7w inspect` (vqa/commands/report.py)."""

import sys

from vqa.commands import main

if __name__ == "__main__":
    sys.exit(main(["inspect", *sys.argv[1:]]))
