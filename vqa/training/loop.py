"""The training stage on Accelerate: a loop that reads top to bottom (``train``), like torchvision's references.

    train: setup -> resume -> for each epoch: train_one_epoch -> validate -> end_epoch (best, schedule, checkpoint)

Batches: ``train.batch_size`` is the *global* batch. The DataLoader is prepared with ``split_batches=True``, so
each of N processes gets batch_size / N examples of the same global batch, the scheduler steps once per optimizer
step, and 1 and N processes follow the same schedule over the same batches.
Resume: every epoch ends with a full checkpoint (``vqa/checkpoint.py``); ``train.resume=auto`` continues from the
last complete one. Randomness is drawn from ``(seed, epoch, process)`` at the start of each epoch (``optim.py``),
so a resumed run repeats exactly what an uninterrupted one does and each process draws its own dropout masks.
Ctrl-C or SIGTERM finishes the current optimizer step, saves a mid-epoch checkpoint (RNG state included) and exits
130; resuming skips the batches already done (``StopSignal``).
Selection: the best epoch is chosen on *val* only; test is never looked at here. At the end the best model's
probabilities are calibrated on val (``vqa/calibration.py``), and families still at chance are named.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from ..accel import make_accelerator, precision_line, tracked, tracker_config
from ..checkpoint import TrainerState, load_model, read_meta, resume_training_state, save_best, save_training_state
from ..common.errors import Stopped
from ..common.files import atomic_write_json, atomic_write_text, reached
from ..common.progress import progress_bar
from ..config import Config
from ..data.grounding import attention_loss, gate_loss
from ..data.loader import keep_rng, model_inputs
from ..data.visual7w import N_CANDIDATES
from ..evaluation.calibration import calibration_summary, fit_temperature
from ..evaluation.evaluate import accuracy_of, predict_pass
from ..model.evidence import matching_loss
from ..run import Run, as_run
from .curves import curves
from .optim import seed_epoch
from .schedule import after_epoch, chance_note, describe_epoch, resume_plan, stop_reason
from .setup import Training, setup
from .stopping import StopSignal


# ------------------------------------------------------------------------------------------------ the loop
def train_step(tr: Training, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Forward, the loss (answer + image-text matching of the word evidence + box supervision of attention and
    counting gates), backward, clip, AdamW, LR."""
    t, variant = tr.cfg.train, tr.cfg.model.variant
    with tr.accelerator.accumulate(tr.model):
        scores, attention, aux = tr.model(**model_inputs(batch), with_aux=True)  # [b, K], [b, K, G, H, W], Aux
        loss = tr.net.answer_loss(scores, batch["label"], t.ranking)  # the head's own: CE, or NLL + ranking
        if t.matching > 0 and aux.matching is not None:  # [b, K, I] word evidence on each image of the batch
            loss = loss + t.matching * matching_loss(aux.matching, batch["label"], batch["image_index"])
        if t.attention_supervision > 0 and variant == "attention":
            loss = loss + t.attention_supervision * attention_loss(attention, batch)
            if aux.gates is not None:  # [b, K, H*W, G] counting-gate logits
                loss = loss + t.attention_supervision * gate_loss(aux.gates, batch)
        tr.accelerator.backward(loss)
        if tr.accelerator.sync_gradients:
            tr.accelerator.clip_grad_norm_(tr.model.parameters(), t.clip_norm)
        tr.optimizer.step()
        tr.scheduler.step()
        tr.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


SHOW_LOSS_EVERY = 20  # batches between the progress bar's loss readings (each is a host-device sync)


@dataclass
class EpochStats:
    loss_sum: torch.Tensor  # [2]: sum of losses, examples (this process; a resumed epoch's earlier part included)
    seen: int  # examples this process trained on now
    seconds: float
    data_wait: float  # share of ``seconds`` spent waiting for batches
    stopped_after: int = 0  # > 0: a stop signal ended the epoch after this batch


def train_one_epoch(tr: Training, state: TrainerState, epoch: int, stop: StopSignal | None = None,
                    batches: Any = None, progress: bool = True) -> EpochStats:  # fmt: skip
    """One pass over the train split, from batch ``state.batch`` when resuming a stopped epoch.

    Stops after a whole optimizer step when ``stop`` is requested (the caller saves the checkpoint). ``batches``
    replaces the loader (the benchmark's batches already in memory)."""
    acc, n, skip = tr.accelerator, len(tr.train_loader), state.batch
    if not skip:
        seed_epoch(tr.cfg.seed, epoch)  # (a stopped run's RNG state was restored by load_state instead)
    loader = acc.skip_first_batches(tr.train_loader, skip) if skip else tr.train_loader
    loader.set_epoch(epoch)
    tr.train_examples.set_epoch(epoch)  # candidate order; Accelerate skips the dataset's set_epoch when sharded
    if batches is None:
        batches = keep_rng(loader) if skip else loader
    tr.model.train()
    resumed = state.loss_sum if skip and acc.is_main_process else [0.0, 0.0]
    loss_sum = torch.tensor(resumed, device=acc.device)
    stats = EpochStats(loss_sum, 0, 0.0, 0.0)
    bar = progress_bar(n, f"epoch {epoch + 1}/{tr.cfg.train.epochs}", "batch", initial=skip, in_log=False,
                       disable=not (progress and acc.is_local_main_process))  # the epoch's log line follows
    start = fetch = time.perf_counter()
    for i, batch in enumerate(batches, start=skip + 1):
        stats.data_wait += time.perf_counter() - fetch
        loss = train_step(tr, batch)
        b = len(batch["label"])
        loss_sum += torch.stack([loss * b, torch.tensor(float(b), device=loss.device)])
        stats.seen += b
        reached(f"train:epoch{epoch + 1}:batch{i}")
        bar.update(1)
        if i % SHOW_LOSS_EVERY == 0 and not bar.disable:  # reading the loss waits for the device: not every step
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if stop is not None and acc.sync_gradients and i < n and stop.requested(i):
            stats.stopped_after = i
            break
        fetch = time.perf_counter()
    bar.close()
    stats.seconds = time.perf_counter() - start
    stats.data_wait /= stats.seconds
    return stats


def validate(tr: Training) -> dict[str, Any]:
    """Val accuracy (ties wrong), per type and per question family, and the answer loss, gathered over every
    process."""
    out = predict_pass(tr.model, tr.val_loader, tr.accelerator)
    val = accuracy_of(out)
    families = np.array([tr.val_family.get(int(i), "") for i in out["qa_id"]])
    val["per_family"] = {f: float(val["correct"][families == f].mean()) for f in sorted(set(families)) if f}
    return val


def end_epoch(tr: Training, state: TrainerState, stats: EpochStats, val: dict[str, Any],
              meta: dict[str, Any]) -> tuple[str | None, Path]:  # fmt: skip
    """After an epoch: keep the best weights, update the schedule, log, checkpoint. Returns (why stop, checkpoint)."""
    acc, t, epoch = tr.accelerator, tr.cfg.train, state.epoch + 1
    reached(f"train:validated:epoch{epoch}")
    totals = acc.reduce(stats.loss_sum, reduction="sum")
    state.epoch, state.batch, state.step, state.loss_sum = epoch, 0, epoch * tr.steps_per_epoch, [0.0, 0.0]
    improved = val["accuracy"] > state.best_accuracy
    if improved:
        state.best_accuracy, state.best_epoch = val["accuracy"], epoch
        if acc.is_main_process:
            save_best(acc.unwrap_model(tr.model), tr.run.checkpoints_dir,
                      {**meta, "epoch": epoch, "val_accuracy": val["accuracy"], "val_per_type": val["per_type"]})
    reason = after_epoch(state, improved, val["loss"], t)  # progress, the cooldown, and whether to stop
    tr.schedule.follow(state, tr.steps_per_epoch)
    row = {"epoch": epoch, "train_loss": float(totals[0] / totals[1]), "val_loss": val["loss"],
           "val_accuracy": val["accuracy"], "val_per_type": val["per_type"], "val_per_family": val["per_family"],
           "lr": tr.scheduler.get_last_lr()[0],
           "questions_per_s": stats.seen * acc.num_processes / stats.seconds,  # all processes
           "data_wait": stats.data_wait, "seconds": round(stats.seconds, 2), "best": improved,
           "schedule": describe_epoch(state, t), "stop": reason}
    state.history.append(row)
    acc.log(tracked(row), step=epoch)  # to train.log_with's tracker; a no-op without one
    saved = save_training_state(tr.run.checkpoints_dir, t.keep_checkpoints, acc, state, {**meta, "epoch": epoch})
    if acc.is_main_process:  # rewritten from the checkpointed history: a kill never loses a row
        rows = "".join(json.dumps(r) + "\n" for r in state.history)
        atomic_write_text(tr.run.train_log, rows)
    best = " best" if improved else ""
    acc.print(f"epoch {epoch}: loss {row['train_loss']:.4f}  val loss {val['loss']:.4f} acc {val['accuracy']:.4f}"
              f"{best} ({row['schedule']})  lr {row['lr']:.2e}  {row['questions_per_s']:.0f} q/s, "
              f"data wait {row['data_wait']:.1%}")
    return reason, saved


def stop_mid_epoch(tr: Training, state: TrainerState, stats: EpochStats, meta: dict[str, Any], name: str) -> None:
    """Save the state of an epoch stopped after ``stats.stopped_after`` batches, then raise ``Stopped``."""
    i, epoch, n = stats.stopped_after, state.epoch, len(tr.train_loader)
    state.batch, state.step = i, epoch * tr.steps_per_epoch + i // tr.cfg.train.grad_accum
    state.loss_sum = tr.accelerator.reduce(stats.loss_sum.clone(), reduction="sum").tolist()
    saved = save_training_state(tr.run.checkpoints_dir, tr.cfg.train.keep_checkpoints, tr.accelerator, state,
                                {**meta, "epoch": epoch, "batch": i})  # fmt: skip
    raise Stopped(f"{name}: stopped in epoch {epoch + 1} of {tr.cfg.train.epochs} after batch {i} of {n}; "
                  f"checkpoint {saved}", ["rerun the same command to resume"])  # fmt: skip


def calibrate(tr: Training) -> None:
    """Fit the best model's temperature on val (``calibration.py``) and keep it in ``best/meta.json``, with the
    val ECE before and after; a run calibrated already is left as it is (the best model did not change)."""
    best = tr.run.checkpoints_dir / "best"
    if not (best / "model.safetensors").is_file() or "calibration" in read_meta(best):
        return
    model, meta = load_model(best)
    out = predict_pass(model.to(tr.accelerator.device), tr.val_loader, tr.accelerator)
    label = np.argmax(out["order"] == 0, axis=1)
    fitted = calibration_summary(out["scores"], label, accuracy_of(out)["correct"],
                                 fit_temperature(out["scores"], label))  # fmt: skip
    if tr.accelerator.is_main_process:
        kept = {k: fitted[k] for k in ("temperature", "ece_before", "ece_after", "nll_before", "nll_after")}
        atomic_write_json(best / "meta.json", {**meta, "calibration": {"split": "val", "n": len(label), **kept}})
        tr.accelerator.print(f"calibrated on val: temperature {fitted['temperature']:.2f}, expected calibration "
                             f"error {fitted['ece_before']:.3f} -> {fitted['ece_after']:.3f}")  # fmt: skip
    tr.accelerator.wait_for_everyone()


def best_row(state: TrainerState) -> dict[str, float]:
    """The val accuracy per question family at the best epoch (empty before any)."""
    rows = [r for r in state.history if r["epoch"] == state.best_epoch]
    return rows[-1].get("val_per_family", {}) if rows else {}


def train(cfg: Config | Run, accelerator: Accelerator | None = None) -> TrainerState:
    """Train ``cfg.model`` on the train split until it stops making progress (``schedule.py``); the best epoch on
    val is kept."""
    run = as_run(cfg)
    cfg = run.cfg
    accelerator = accelerator or make_accelerator(cfg, training=True)
    tr = setup(run, accelerator)
    state = resume_training_state(run.checkpoints_dir, cfg.train, accelerator)
    resume_plan(state, cfg.train)
    tr.schedule.follow(state, tr.steps_per_epoch)  # also restored by load_state; the trainer state rules
    meta = {"spec": accelerator.unwrap_model(tr.model).spec.to_dict(), "features": run.reader.manifest["fingerprint"],
            "seed": cfg.seed, "data": tr.data}  # fmt: skip
    reason = stop_reason(state, cfg.train)
    accelerator.print(f"nothing to do: {reason}" if reason else precision_line(cfg.train, accelerator))
    if cfg.train.log_with != "none":  # TensorBoard (or another Accelerate tracker) under <run.dir>/tb/train
        accelerator.init_trackers("train", config=tracker_config(cfg))
    with StopSignal(accelerator) as stop:
        while reason is None:
            stats = train_one_epoch(tr, state, state.epoch, stop)
            if stats.stopped_after:
                stop_mid_epoch(tr, state, stats, meta, stop.name)
            reason, saved = end_epoch(tr, state, stats, validate(tr), meta)
            if reason:
                accelerator.print(reason)
                note = chance_note(best_row(state), Counter(tr.val_family.values()), N_CANDIDATES)
                if note:
                    accelerator.print(note)
            elif stop.requested():
                raise Stopped(f"{stop.name}: stopped after epoch {state.epoch} of {cfg.train.epochs}; checkpoint "
                              f"{saved}", ["rerun the same command to resume from it"])  # fmt: skip
    calibrate(tr)  # finished (a signal raises instead): its probabilities made to mean what they say
    for tracker in accelerator.trackers:  # close the event files; not end_training(), which also ends the
        tracker.finish()  # process group that the barrier below (and the stage after training) still needs
    if accelerator.is_main_process and run.train_log.exists():
        curves(run.train_log, run.dir / "curves.png")
    accelerator.wait_for_everyone()
    return state
