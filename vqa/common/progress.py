"""Progress of long work: a tqdm bar on a terminal, plain lines in a log.

Why: a bar redraws itself with carriage returns, so ``make demo > log`` (and every CI log) became a stream of
hundreds of half-lines in which the lines that matter (the epoch lines) drowned. When stderr is not a terminal,
a stage writes one line per ``STEP`` of its work instead (at most one per ``GAP`` seconds, and always the last),
and an epoch's bar writes nothing there: its epoch line says it all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

STEP = 0.1  # a log line per 10 % of a stage's work
GAP = 10.0  # seconds at least between two such lines (the last one excepted)


def on_terminal() -> bool:
    """Whether stderr (where progress goes) is a terminal a bar can redraw itself on."""
    return sys.stderr.isatty()


class Lines:
    """tqdm's ``update`` / ``set_postfix`` / ``close`` as plain lines on stderr: ``desc: 40/100 img (40 %), 12 s,
    3.3 img/s``."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0, quiet: bool = False) -> None:
        self.total, self.desc, self.unit, self.n, self.quiet = total, desc, unit, initial, quiet
        self.disable = quiet  # as tqdm's: nothing of it is ever shown
        self.start = self.last_time = time.perf_counter()
        self.first, self.next_at, self.postfix = initial, initial + STEP * total, ""

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if self.n >= self.next_at and now - self.last_time >= GAP and self.n < self.total:
            self._line(now)

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.n > self.first:
            self._line(time.perf_counter())
        self.quiet = True  # one last line, however often close is called

    def _line(self, now: float) -> None:
        if self.quiet:
            return
        seconds = now - self.start
        rate = (self.n - self.first) / seconds if seconds > 0 else 0.0
        share = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        tail = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}{share}, {seconds:.0f} s, {rate:.1f} {self.unit}/s{tail}",
              file=sys.stderr, flush=True)  # fmt: skip
        self.last_time = now
        while self.next_at <= self.n:
            self.next_at += STEP * self.total


def progress_bar(total: int, desc: str, unit: str = "it", disable: bool = False, initial: int = 0,
        in_log: bool = True) -> Any:  # fmt: skip
    """A progress bar of ``total`` steps: tqdm on a terminal, else ``Lines`` (silent with ``in_log=False``: work
    that logs its own summary line, like a training epoch)."""
    if on_terminal():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable, mininterval=1.0,
                    smoothing=0.1)  # fmt: skip
    return Lines(total, desc, unit, initial, quiet=disable or not in_log)


def track(items: Iterable[Any], desc: str, unit: str = "it", total: int | None = None,
          disable: bool = False) -> Iterator[Any]:  # fmt: skip
    """Iterate ``items`` with a ``progress_bar`` (``total`` defaults to ``len(items)``)."""
    n = len(items) if total is None else total  # type: ignore[arg-type]
    progress = progress_bar(n, desc, unit, disable)
    try:
        for item in items:
            yield item
            progress.update(1)
    finally:
        progress.close()
