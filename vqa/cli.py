"""Shared command-line plumbing for ``pipelines/*.py``.

Every stage takes ``--config FILE`` plus ``section.key=value`` overrides, and every stage reports user errors the
same way: one line per problem on stderr, exit code 2, no traceback (``--debug`` shows it). A training run stopped
by Ctrl-C/SIGTERM exits with 130 after saving its checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .common.errors import VQAError
from .common.malloc import tune_malloc
from .config import DEFAULT_CONFIG, load_config
from .run import Run

EXIT_INTERRUPTED = 130


def parse(
    description: str,
    argv: Sequence[str] | None = None,
    add_args: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[Run, argparse.Namespace]:
    """Parse ``--config``, ``--debug``, stage-specific flags (``add_args``) and the overrides; the stage's ``Run``
    of the loaded config."""
    parser = argparse.ArgumentParser(description=description)
    if add_args is not None:
        add_args(parser)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"experiment YAML (default: {DEFAULT_CONFIG})")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    args = parser.parse_args(argv)
    return Run(load_config(args.config, args.overrides)), args


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a stage's ``main(argv)``, turning user errors into a clean message and an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    tune_malloc()
    debug = "--debug" in argv
    try:
        main(argv)
    except VQAError as e:
        if debug:
            raise
        print(f"{e.label}: {e.render()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
