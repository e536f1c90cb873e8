"""`python pipelines/serve.py --config FILE [section.key=value ...]` in a checkout: the `serve` command,
the same code as `vqa7w serve` (vqa/commands/serve.py)."""

import sys

from vqa.commands import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
