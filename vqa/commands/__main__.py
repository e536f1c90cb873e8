"""``python -m vqa.commands <command> ...``: the same as the ``vqa7w`` console script."""

import sys

from . import main

sys.exit(main())
