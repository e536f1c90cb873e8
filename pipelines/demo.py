"""`python pipelines/demo.py --config FILE [section.key=value ...]` in a checkout: the `demo` command,
the same code as `vqa7w demo` (vqa/commands/demo.py)."""

import sys

from vqa.commands import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
