"""Atomic file writes.

Every output the pipeline produces is written to a temporary file in the same folder and renamed into place, so a
crash (kill -9, full disk, Ctrl-C) leaves either the old file or the new one, never a half-written file that a
later stage would trust.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)
os.umask(_UMASK)


HALT_AT = "VQA_HALT_AT"  # test-only: "<event>" at which a stage stops dead (see ``reached``)


def reached(event: str) -> None:
    """A named moment of a stage (``train:epoch2:batch3``, ``dir-swap:test``, ``features:shard1``).

    Test hook for crash tests, a no-op otherwise: with ``VQA_HALT_AT=<event>`` in the environment, the stage
    prints ``halted at <event>`` to stderr and waits for a signal there. A test reads that line, then kills
    (kill -9: the process ends at exactly this point) or sends SIGTERM (its handler runs, the stage goes on), so
    a kill lands where the test says, on any machine speed, instead of after a sleep.
    """
    if os.environ.get(HALT_AT) == event and threading.current_thread() is threading.main_thread():
        got: list[int] = []
        old = {sig: signal.signal(sig, lambda signum, _: got.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
        print(f"halted at {event}", file=sys.stderr, flush=True)  # the note above is in place: no signal is lost
        while not got:  # kill -9 ends the process here (Python handlers run in the main thread: sigwait would not
            time.sleep(0.01)  # see a signal the kernel gave to a torch or tqdm thread)
        for sig, handler in old.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set from C, not Python
        signal.raise_signal(got[0])  # the stage's own handler (or the default action) runs now


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False) -> Path:
    """Call ``write(f)`` on a temp file next to ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs should read like any other file
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data), binary=True)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    return atomic_write(path, lambda f: json.dump(obj, f, indent=indent, ensure_ascii=False))


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes, and the figure closed: the one way every stage turns a plot into a file."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def save_figure(path: str | Path, fig: Any, dpi: int = 100) -> Path:
    """Write a matplotlib figure to ``path`` as a PNG, atomically (curves, bench chart, inspect panels)."""
    return atomic_write_bytes(path, figure_png(fig, dpi))


def atomic_write_dir(final: str | Path, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_dir)`` on a fresh folder next to ``final``, then swap it in place of ``final``.

    For outputs made of several files (eval's predictions + metrics, inspect's PNGs + index): a reader sees the
    old set or the new set, never a mix. Temp folders a killed run left (``.<name>.*``) are removed first; a kill
    between the two renames leaves the old set whole in ``.<name>.old``, which the next write puts back first.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    old = recover_dir(final)
    for stale in final.parent.glob(f".{final.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        write(str(tmp))
        reached(f"dir-written:{final.name}")
        if final.exists():
            final.rename(old)
            reached(f"dir-swap:{final.name}")
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        recover_dir(final)
        raise
    return final


def recover_dir(final: str | Path) -> Path:
    """Put back the old set of an ``atomic_write_dir`` stopped between its two renames (``final`` gone, its old
    content in ``.<name>.old``); returns that ``.old`` path. Readers of such folders call it too."""
    final = Path(final)
    old = final.with_name(f".{final.name}.old")
    if old.is_dir() and not final.exists():
        old.rename(final)
    return old
