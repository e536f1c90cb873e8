"""User-facing errors.

Every problem a user can fix (a bad config key, a malformed dataset record, an unreadable image) is raised as a
``VQAError`` carrying one line per problem. Entry points print those lines and exit non-zero instead of showing a
traceback, which would bury the one fact the user needs (which item, what is wrong) under library internals.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_LINES = 50  # beyond this a list of problems stops being readable; the rest are counted


class VQAError(Exception):
    """An error the user can act on; ``problems`` holds one self-contained line per problem."""

    exit_code = 2
    label = "error"

    def __init__(self, headline: str, problems: Iterable[str] = ()) -> None:
        self.headline = headline
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        lines = [self.headline]
        shown = self.problems[:MAX_LINES]
        lines += [f"  - {p}" for p in shown]
        if len(self.problems) > len(shown):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


def summary(e: BaseException, prefer: tuple[str, ...] = ()) -> str:
    """The one line of a library exception worth showing: the first starting with ``prefer``, else the first.

    Library errors (torch, safetensors, Accelerate) often open with a generic line ("Error(s) in loading
    state_dict") and put the fact a user can act on ("size mismatch for ...") further down.
    """
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    line = next((ln for ln in lines if prefer and ln.startswith(prefer)), lines[0] if lines else type(e).__name__)
    return line[:300]


class ConfigError(VQAError):
    """A config file or command-line override is wrong."""


class DatasetError(VQAError):
    """A Visual7W annotation or grounding file is missing or malformed."""


class ScoringError(VQAError):
    """A results file cannot be scored against the dataset."""


class Stopped(VQAError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint: not a failure, but not finished either."""

    exit_code = 130
    label = "stopped"
