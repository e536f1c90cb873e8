"""Stopping a training run on a signal: finish the step, save a checkpoint, exit; the same step on every process."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from accelerate import Accelerator

CHECK_EVERY = 16  # optimizer steps between the processes' agreement on a stop


class StopSignal:
    """SIGINT/SIGTERM -> finish the current optimizer step, save a checkpoint, exit 130; a second signal aborts.

    Why the trigger: the flag goes through ``accelerator.set_trigger``/``check_trigger`` (a sum over processes),
    so every process stops at the same step even when only one got the signal; a collective ``save_state`` at
    different steps would hang.
    """

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator, self.name, self._old, self._pid = accelerator, "", {}, os.getpid()

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # ignored on purpose (`nohup`, `cmd &`): keep so
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker (Ctrl-C reaches the whole process group)
            return
        self.name = signal.Signals(signum).name
        self.accelerator.set_trigger()
        self._restore()  # a second signal acts at once (KeyboardInterrupt / termination)
        print(f"\n{self.name}: saving a checkpoint after this step, then stopping (again to abort now)",
              file=sys.stderr, flush=True)  # fmt: skip

    def _restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def requested(self, step: int | None = None) -> bool:
        """Whether to stop after this step. One process reads its own flag, free at every step. N processes
        agree through ``check_trigger`` (an all-reduce, a device sync) only every ``CHECK_EVERY`` steps and at
        an epoch's end (``step`` None), the same steps on all of them."""
        if self.accelerator.num_processes == 1:
            return bool(self.name)
        if step is not None and step % CHECK_EVERY:
            return False
        return self.accelerator.check_trigger()
