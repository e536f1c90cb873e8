"""The learning-rate schedule and the stopping rule: they follow learning, not an epoch count or the loss alone.

    warmup (train.warmup epochs) -> stable: the peak LR while the run makes progress -> cooldown: the LR falls
    linearly to 0 over train.cooldown x the epochs so far (at least 2) -> stop

*Progress* is a new best val accuracy or a val loss lower than the lowest so far by a real margin (``LOSS_MARGIN``);
the cooldown starts after ``train.patience`` epochs without either (or early enough to end by ``train.epochs``, a
ceiling). Why a margin on the loss: a model that answers every val question right drives its loss towards 0 by
ever smaller steps (0.0000 printed, a new lowest every epoch), which is no learning; without the margin such a run
trained on to the epoch ceiling. Why both signals: a slow learner can sit
on a val-accuracy plateau for several epochs while its val loss still falls (it is learning, not done), and a
model that grows confident on what it knows sees its val loss rise while its val accuracy still climbs. Either
alone stopped runs that were still learning, and halving the LR on every stall of one signal (the previous rule)
took a slow learner's LR to 1/256 of its peak while its accuracy rose. Why a cooldown rather than stopping at the
peak LR: the last epochs at a falling LR are where a run gains its final points (warmup-stable-decay schedules),
and the length of the stable phase is whatever the data needed.
"""

from __future__ import annotations

import math
from typing import Any

from ..checkpoint import TrainerState


class WarmupStableDecay:
    """LR multiplier per optimizer step: linear warmup over ``warmup`` steps, 1 while stable, then a linear fall to
    0 over ``decay_steps`` from ``decay_start``. A callable object, not a closure, so that ``LambdaLR.state_dict``
    (and ``save_state``) keeps its fields."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.decay_start, self.decay_steps = warmup, -1, 0

    def __call__(self, step: int) -> float:
        scale = min(1.0, (step + 1) / max(1, self.warmup))
        if self.decay_start >= 0:
            scale *= max(0.0, 1.0 - (step + 1 - self.decay_start) / max(1, self.decay_steps))
        return scale

    def follow(self, state: TrainerState, steps_per_epoch: int) -> None:
        """Set the decay from the trainer state (the one source of truth, also after a resume)."""
        self.decay_start = state.cooldown_from * steps_per_epoch if state.cooldown_from else -1
        self.decay_steps = state.cooldown_epochs * steps_per_epoch


LOSS_MARGIN = (1e-3, 0.005)  # a new lowest val loss is progress when lower by more than max(abs, rel x lowest)


def lower_loss(val_loss: float, lowest: float | None) -> bool:
    """Whether ``val_loss`` is progress over the ``lowest`` so far (None: the first epoch): lower by a margin."""
    if math.isnan(val_loss):
        return False
    return lowest is None or val_loss < lowest - max(LOSS_MARGIN[0], LOSS_MARGIN[1] * lowest)


def cooldown_length(epoch: int, t: Any) -> int:
    return max(2, math.ceil(t.cooldown * epoch))


def after_epoch(state: TrainerState, improved: bool, val_loss: float, t: Any) -> str | None:
    """Update the progress counters in ``state`` after epoch ``state.epoch`` (``improved``: a new best val
    accuracy); start the cooldown when the run stalls or must end by ``train.epochs``. Returns why training
    stops now, or None."""
    epoch = state.epoch
    state.bad_epochs = 0 if improved else state.bad_epochs + 1
    lower = lower_loss(val_loss, state.best_loss)
    if lower:
        state.best_loss = val_loss
    if improved or lower:
        state.progress_epoch = epoch
    if not state.cooldown_from:
        length = cooldown_length(epoch, t)
        stalled = epoch - state.progress_epoch >= t.patience
        if stalled or epoch + length >= t.epochs:
            state.cooldown_from = epoch
            state.cooldown_epochs = length if stalled else max(0, t.epochs - epoch)
            state.stalled = stalled
    return stop_reason(state, t)


def resume_plan(state: TrainerState, t: Any) -> None:
    """A run the epoch ceiling ended (not a stall) continues when rerun with a higher ``train.epochs``: its
    cooldown is undone, so the LR is back at its peak until the run stalls or must end by the new ceiling."""
    if state.cooldown_from and not state.stalled and state.cooldown_from + state.cooldown_epochs < t.epochs:
        state.cooldown_from = state.cooldown_epochs = 0


def stop_reason(state: TrainerState, t: Any) -> str | None:
    """Why training is over at this state, or None to go on."""
    if not state.cooldown_from or state.epoch < state.cooldown_from + state.cooldown_epochs:
        return None
    best = f"best val accuracy {state.best_accuracy:.4f} at epoch {state.best_epoch}"
    if state.stalled:
        return (f"stopped after the cooldown: no new best val accuracy or lowest val loss for {epochs(t.patience)} "
                f"by epoch {state.cooldown_from}, then the LR fell to 0 over {epochs(state.cooldown_epochs)} ({best})")
    fall = (f"the LR fell to 0 over the last {epochs(state.cooldown_epochs)}" if state.cooldown_epochs
            else "no epoch was left for a cooldown")  # fmt: skip
    return (f"reached train.epochs={t.epochs} while still making progress ({fall}; {best}): raise train.epochs to "
            "train longer")


def epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


def describe_epoch(state: TrainerState, t: Any) -> str:
    """The console's word on where the schedule stands after an epoch."""
    if state.cooldown_from:
        left = state.cooldown_from + state.cooldown_epochs - state.epoch
        return f"cooldown, {epochs(left)} left"
    if state.progress_epoch == state.epoch:
        return "progress"
    return f"no progress for {state.epoch - state.progress_epoch}/{t.patience}"


def at_chance(per_family: dict[str, float], counts: dict[str, int], k: int) -> list[str]:
    """The question families whose val accuracy is within 3 standard errors of chance (1/k): the model has not
    learnt to answer them, whatever the overall figure says."""
    p = 1.0 / k
    return [f for f, acc in sorted(per_family.items())
            if counts.get(f) and acc < p + 3 * math.sqrt(p * (1 - p) / counts[f])]  # fmt: skip


def chance_note(per_family: dict[str, float], counts: dict[str, int], k: int) -> str | None:
    """A plain line for the end of training when families are still at chance (None when none is)."""
    stuck = at_chance(per_family, counts, k)
    if not stuck:
        return None
    what = "every question family" if len(stuck) == len(per_family) else f"{len(stuck)} of {len(per_family)} families"
    shown = ", ".join(f"{f} {per_family[f]:.2f}" for f in stuck[:6]) + (", ..." if len(stuck) > 6 else "")
    return (f"at chance on {what} (val, best epoch: {shown}; chance {1 / k:.2f}): the model has not learnt to use "
            "the image for them. Try a longer run (train.epochs), the word evidence with its matching loss "
            "(model.evidence=true train.matching=1.0), or grounding boxes (data.grounding, "
            "train.attention_supervision); docs/training.md#at-chance")

