"""`python pipelines/bench.py --config FILE [section.key=value ...]` in a checkout: the `bench` command,
the same code as `vqa7w bench` (vqa/commands/bench.py)."""

import sys

from vqa.commands import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
