"""`make inspect`: one PNG per question (the image with one attention overlay per candidate) + index.html, and the
attention explorer of the whole split (explorer.html: open it in a browser, no server needed).

    vqa7w inspect --config configs/default.yaml [inspect.n=24] [inspect.qa_ids=[12,345]]
                                [inspect.compare=runs/default_no_supervision]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .. import cli
from ..report.inspect import run_report


def main(argv: Sequence[str] | None = None) -> None:
    run, _ = cli.parse(__doc__.splitlines()[0], argv)
    if os.environ.get("RANK", "0") != "0":
        return  # a report needs one process; under a launcher the others have nothing to do
    out = run_report(run)
    right = sum(it["correct"] for it in out["items"])
    print(f"inspect: {len(out['items'])} questions ({right} correct) -> {out['index']}")
    print(f"explorer: {out['explored']} questions -> {out['explorer']} (open it in a browser)")


if __name__ == "__main__":
    sys.exit(cli.run(main))
