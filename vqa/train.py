"""The training stage on Accelerate: one loop, readable top to bottom (see ``train``).

Batches: ``train.batch_size`` is the *global* batch. The DataLoader is prepared with ``split_batches=True``, so
each of N processes gets batch_size / N examples of the same global batch, the scheduler steps once per optimizer
step, and 1 and N processes follow the same schedule over the same batches.
Resume: every epoch ends with a full checkpoint (``checkpoint.py``); ``train.resume=auto`` continues from the last
complete one. Randomness is drawn from ``(seed, epoch)`` at the start of each epoch, so a resumed run repeats
exactly what an uninterrupted one does. Ctrl-C or SIGTERM finishes the current optimizer step, saves a mid-epoch
checkpoint (RNG state included) and exits 130; resuming skips the batches already done (``StopSignal``).
Selection: the best epoch is chosen on *val* only; test is never looked at here.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .accel import make_accelerator
from .checkpoint import (
    STATE_DICT_PROBLEMS,
    checkpoint_name,
    checkpoints_dir,
    complete_checkpoints,
    finalize,
    remove_stale,
    save_best,
)
from .config import Config
from .data import dataset_from_config
from .errors import Stopped, VQAError, summary
from .evaluate import accuracy_of, predict_pass
from .features import FeatureReader, features_dir
from .grounding import attention_loss, gate_loss, grounding_targets
from .io import atomic_write_text, save_figure
from .loader import QAExamples, collate, make_sampler, model_inputs, split_rows
from .model import ModelSpec, VQAModel, init_embedding
from .text import build_tokenizer, load_tokenizer, read_word_vectors, save_qa, save_tokenizer, tokenise_qa


def prepare_text(cfg: Config, accelerator: Accelerator, resume: bool, grid: tuple[int, int, int]) -> tuple[Any, Any]:
    """Tokenizer (reused when resuming, else built from train) and the tokenised QA table, shared via disk."""
    run = Path(cfg.run.dir)
    dataset = dataset_from_config(cfg)
    if accelerator.is_main_process:
        if resume and (run / "tokenizer" / "tokenizer.json").is_file():
            tokenizer = load_tokenizer(run / "tokenizer")
        else:
            tokenizer = build_tokenizer(dataset.split("train"), cfg.text.min_freq)
            save_tokenizer(tokenizer, run / "tokenizer")
        targets = grounding_targets(cfg, dataset, grid)
        save_qa(tokenise_qa(dataset.qa, tokenizer, cfg.text.max_len, targets), run / "qa")
    accelerator.wait_for_everyone()
    from datasets import load_from_disk

    return load_tokenizer(run / "tokenizer"), load_from_disk(str(run / "qa"))


def build_model(cfg: Config, tokenizer: Any, grid: tuple[int, int, int], log: Any) -> VQAModel:
    model = VQAModel(ModelSpec.from_config(cfg, len(tokenizer), grid))
    if cfg.model.word_vectors:
        vocab = tokenizer.get_vocab()
        vectors, found = read_word_vectors(cfg.model.word_vectors, vocab, cfg.model.embed_dim)
        init_embedding(model, vectors, found)
        log(f"word vectors: {int(found[2:].sum())}/{len(vocab) - 2} vocabulary words found in {cfg.model.word_vectors}")
    return model


class WarmupPlateau:
    """LR multiplier: linear warmup over ``warmup`` steps, then ``scale``, which ``plateau`` lowers on stalls.

    Why not cosine over ``train.epochs``: with early stopping, ``epochs`` is only a ceiling, and a schedule laid
    out over the ceiling would still be at its peak when training stops. The LR instead halves (``train.lr_decay``)
    every ``train.lr_patience`` epochs without a new lowest val loss, and training stops after ``train.patience``
    epochs without a new best val accuracy (``plateau``). A callable object, not a closure, so
    ``LambdaLR.state_dict`` (and ``save_state``) keeps ``scale``.
    """

    def __init__(self, warmup: int) -> None:
        self.warmup, self.scale = warmup, 1.0

    def __call__(self, step: int) -> float:
        return self.scale * min(1.0, (step + 1) / max(1, self.warmup))


def plateau(state: dict[str, Any], improved: bool, val_loss: float, t: Any) -> str | None:
    """Update the patience counters in ``state`` after an epoch; returns why training stops now, or None.

    Two signals, each for what it is good at. The LR decays when the val *loss* stops falling: accuracy on ~1,000
    val questions moves by +-0.01 from noise alone, and decaying on every such dip halved the LR while the model
    was still learning fast (0.5e-3 at epoch 8, 1.25e-4 at epoch 12 on the demo). Stopping and model selection
    use val *accuracy*, the number reported."""
    state["bad_epochs"] = 0 if improved else state.get("bad_epochs", 0) + 1
    if val_loss < state.get("best_loss", float("inf")):
        state.update(best_loss=val_loss, loss_bad_epochs=0)
    else:
        state["loss_bad_epochs"] = state.get("loss_bad_epochs", 0) + 1
        if state["loss_bad_epochs"] % t.lr_patience == 0:
            state["lr_scale"] = state.get("lr_scale", 1.0) * t.lr_decay
    return plateau_reason(state, t)


def plateau_reason(state: dict[str, Any], t: Any) -> str | None:
    """Why training is over at this state (early stop, or the epoch ceiling), or None to go on."""
    if state.get("bad_epochs", 0) >= t.patience:
        return (f"early stop: val accuracy has not improved for {t.patience} epochs "
                f"(best {state['best_accuracy']:.4f} at epoch {state['best_epoch']})")  # fmt: skip
    if state["epoch"] >= t.epochs:
        return (f"reached train.epochs={t.epochs} before val accuracy stopped improving "
                f"(best {state['best_accuracy']:.4f} at epoch {state['best_epoch']}): raise train.epochs")  # fmt: skip
    return None


def check_store(cfg: Config, reader: FeatureReader) -> None:
    m, f = reader.manifest, cfg.features
    there = (m["backbone"], m["image_size"], m.get("hypercolumn", []))
    if there != (f.backbone, f.image_size, list(f.hypercolumn)):
        raise VQAError(f"the features in {reader.root} were extracted with {m['backbone']}@{m['image_size']} "
                       f"hypercolumn={there[2]}, but the config says {f.backbone}@{f.image_size} "
                       f"hypercolumn={list(f.hypercolumn)}: rerun `make features` or fix features.*")  # fmt: skip


def curves(log_path: Path, out: Path) -> None:
    """Loss and val accuracy per epoch, from train_log.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows], marker="o")
    ax1.set(xlabel="epoch", ylabel="train loss", title="training loss")
    ax2.plot([r["epoch"] for r in rows], [r["val_accuracy"] for r in rows], marker="o", label="overall")
    for t in rows[-1]["val_per_type"]:
        ax2.plot([r["epoch"] for r in rows], [r["val_per_type"].get(t) for r in rows], alpha=0.6, label=t)
    ax2.axhline(0.25, color="grey", linestyle=":", label="chance")
    ax2.set(xlabel="epoch", ylabel="val accuracy", title="validation accuracy", ylim=(0, 1))
    ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(out, fig, dpi=110)


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

    def requested(self) -> bool:
        return self.accelerator.check_trigger()


def _keep_rng(loader: Any) -> Any:
    """Iterate a resumed mid-epoch loader without letting its start move the restored RNG.

    Why: a DataLoader iterator draws a base seed from the global generator when it starts. The interrupted run
    drew it at the start of the epoch, before the state that ``load_state`` restored; drawing it again would
    shift every later dropout mask.
    """
    state = torch.get_rng_state()
    for n, batch in enumerate(loader):
        if n == 0:
            torch.set_rng_state(state)
        yield batch


def _load_problem(e: Exception) -> str:
    """The one line of a ``load_state`` failure a user can act on."""
    import pickle

    if isinstance(e, pickle.UnpicklingError):  # torch's own text would suggest weights_only=False: never
        return "a file in it holds pickled objects that are not plain tensors (refused: weights-only loading)"
    return summary(e, STATE_DICT_PROBLEMS)


def _resume_point(cfg: Config, accelerator: Accelerator, log: Any) -> dict[str, Any]:
    """The trainer state of the last complete checkpoint (restored into the prepared objects), or a fresh one."""
    state = {"epoch": 0, "batch": 0, "step": 0, "best_accuracy": -1.0, "best_epoch": 0, "bad_epochs": 0,
             "lr_scale": 1.0}  # fmt: skip
    done = complete_checkpoints(checkpoints_dir(cfg))
    if cfg.train.resume == "auto" and done:
        path = done[-1][1]
        try:
            accelerator.load_state(str(path))
        except Exception as e:  # other model/config, truncated file, a pickle that is not plain tensors
            raise VQAError(f"cannot resume from {path}: {_load_problem(e)}",
                           [f"delete {path} to resume from an earlier checkpoint, or set train.resume=never "
                            "to start over"]) from None  # fmt: skip
        state = {**state, **json.loads((path / "trainer_state.json").read_text())}
        more = f" + {state['batch']} batches" if state["batch"] else ""
        log(f"resuming from {path} ({state['epoch']} of {cfg.train.epochs} epochs{more} done)")
    return state


def _save_checkpoint(cfg: Config, accelerator: Accelerator, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """A full ``save_state`` of every process into a temp folder, renamed into place once complete."""
    root = checkpoints_dir(cfg)
    name = checkpoint_name(state["epoch"], state["batch"])
    tmp = root / f".tmp_{name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        finalize(tmp, name, state, meta, cfg.train.keep_checkpoints)
    accelerator.wait_for_everyone()
    return root / name


def train(cfg: Config, accelerator: Accelerator | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` on the train split, select on val; returns the final state and best val accuracy."""
    accelerator = accelerator or make_accelerator(cfg, training=True)
    log = accelerator.print
    run = Path(cfg.run.dir)
    t = cfg.train
    if t.batch_size % accelerator.num_processes:
        raise VQAError(f"train.batch_size={t.batch_size} must divide by the {accelerator.num_processes} processes")
    if accelerator.is_main_process:
        remove_stale(checkpoints_dir(cfg))
    resume = t.resume == "auto" and bool(complete_checkpoints(checkpoints_dir(cfg)))
    reader = FeatureReader(features_dir(cfg))
    check_store(cfg, reader)
    tokenizer, table = prepare_text(cfg, accelerator, resume, reader.grid)
    use_reader = reader if cfg.model.variant != "blind" else None
    train_rows, dropped = split_rows(table, "train", reader)
    val_rows, _ = split_rows(table, "val", reader)
    if dropped:
        log(f"{dropped} train questions skipped: their image has no features (see the manifest's 'missing')")
    if len(train_rows) < t.batch_size:
        raise VQAError(f"{len(train_rows)} train questions is less than one batch (train.batch_size={t.batch_size})")
    set_seed(cfg.seed)
    model = build_model(cfg, tokenizer, reader.grid, log)
    train_ds = QAExamples(train_rows, use_reader, cfg.seed, train=True)
    # drop_last: every optimizer step sees a full global batch, so 1 and N processes take the same steps
    # (Accelerate would pad an uneven last batch with repeated examples on N processes only).
    train_loader = DataLoader(train_ds, batch_size=t.batch_size, sampler=make_sampler(t.batching, train_rows, cfg.seed),
                              collate_fn=collate, num_workers=t.num_workers, drop_last=True)  # fmt: skip
    val_loader = DataLoader(QAExamples(val_rows, use_reader, cfg.seed, train=False), batch_size=t.batch_size,
                            collate_fn=collate, num_workers=t.num_workers)  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    steps_per_epoch = math.ceil(len(train_loader) / t.grad_accum)  # global batches per optimizer step
    schedule = WarmupPlateau(int(t.warmup * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )
    state = _resume_point(cfg, accelerator, log)
    schedule.scale = state["lr_scale"]  # also restored by load_state; the trainer state is the one we log
    meta = {"spec": accelerator.unwrap_model(model).spec.to_dict(), "features": reader.manifest["fingerprint"],
            "seed": cfg.seed}  # fmt: skip
    log_path = run / "train_log.jsonl"  # rewritten from the checkpointed history: a kill never loses a row
    state.setdefault("history", [])
    reason = plateau_reason(state, t)
    if reason:
        log(f"nothing to do: {reason}")
    with StopSignal(accelerator) as stop:
        for epoch in range(state["epoch"], t.epochs if not reason else state["epoch"]):
            skip = state["batch"]  # > 0: resuming a run stopped inside this epoch
            if not skip:
                set_seed(cfg.seed + 1000 * (epoch + 1))  # dropout etc.: a function of (seed, epoch) only
            # (a stopped run's RNG state was restored by load_state instead)
            loader = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
            loader.set_epoch(epoch)
            batches = _keep_rng(loader) if skip else loader
            train_ds.set_epoch(epoch)  # candidate order; Accelerate skips the dataset's set_epoch when sharded
            model.train()
            loss_sum = torch.tensor(state.get("loss_sum", [0.0, 0.0]) if skip and accelerator.is_main_process
                                    else [0.0, 0.0], device=accelerator.device)  # fmt: skip
            seen, data_time, start = 0, 0.0, time.perf_counter()
            bar = tqdm(total=len(train_loader), initial=skip, desc=f"epoch {epoch + 1}/{t.epochs}", unit="batch",
                       disable=not accelerator.is_local_main_process, mininterval=1.0)  # fmt: skip
            fetch = time.perf_counter()
            for i, batch in enumerate(batches, start=skip + 1):
                data_time += time.perf_counter() - fetch
                with accelerator.accumulate(model):
                    scores, attention, gates = model(**model_inputs(batch), with_gates=True)  # [b, 4], [b, 4, G, H, W]
                    loss = F.cross_entropy(scores, batch["label"])
                    if t.attention_supervision > 0 and cfg.model.variant == "attention":
                        loss = loss + t.attention_supervision * attention_loss(attention, batch)
                        if gates is not None:  # [b, 4, H*W, G] counting-gate logits
                            loss = loss + t.attention_supervision * gate_loss(gates, batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(model.parameters(), t.clip_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                loss_sum += torch.stack([loss.detach() * len(batch["label"]), torch.tensor(len(batch["label"]))])
                seen += len(batch["label"])
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                if accelerator.sync_gradients and i < len(train_loader) and stop.requested():
                    bar.close()
                    totals = accelerator.reduce(loss_sum.clone(), reduction="sum")
                    state.update(batch=i, step=epoch * steps_per_epoch + i // t.grad_accum, loss_sum=totals.tolist())
                    saved = _save_checkpoint(cfg, accelerator, state, {**meta, "epoch": epoch, "batch": i})
                    raise Stopped(f"{stop.name}: stopped in epoch {epoch + 1} of {t.epochs} after batch {i} of "
                                  f"{len(train_loader)}; checkpoint {saved}", ["rerun the same command to resume"])
                fetch = time.perf_counter()
            bar.close()
            train_seconds = time.perf_counter() - start
            totals = accelerator.reduce(loss_sum, reduction="sum")
            val = accuracy_of(predict_pass(model, val_loader, accelerator))
            state.update(epoch=epoch + 1, batch=0, step=(epoch + 1) * steps_per_epoch)
            state.pop("loss_sum", None)
            improved = val["accuracy"] > state["best_accuracy"]
            if improved:
                state.update(best_accuracy=val["accuracy"], best_epoch=epoch + 1)
                if accelerator.is_main_process:
                    save_best(accelerator.unwrap_model(model), checkpoints_dir(cfg),
                              {"epoch": epoch + 1, "val_accuracy": val["accuracy"], "val_per_type": val["per_type"],
                               "features": reader.manifest["fingerprint"], "seed": cfg.seed})  # fmt: skip
            reason = plateau(state, improved, val["loss"], t)  # patience, LR scale, and whether to stop
            schedule.scale = state["lr_scale"]
            row = {"epoch": epoch + 1, "train_loss": float(totals[0] / totals[1]), "val_loss": val["loss"],
                   "val_accuracy": val["accuracy"],
                   "val_per_type": val["per_type"], "lr": scheduler.get_last_lr()[0],
                   "questions_per_s": seen * accelerator.num_processes / train_seconds,  # all processes
                   "data_wait": data_time / train_seconds,
                   "seconds": round(train_seconds, 2), "best": improved, "stop": reason}  # fmt: skip
            state["history"].append(row)
            saved = _save_checkpoint(cfg, accelerator, state, {**meta, "epoch": epoch + 1})
            if accelerator.is_main_process:
                atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in state["history"]))
            best = " (best)" if improved else f" (no gain for {state['bad_epochs']}/{t.patience})"
            log(f"epoch {epoch + 1}: loss {row['train_loss']:.4f}  val loss {val['loss']:.4f} "
                f"acc {val['accuracy']:.4f}{best}  lr {row['lr']:.2e}  {row['questions_per_s']:.0f} q/s, "
                f"data wait {row['data_wait']:.1%}")
            if reason:
                log(reason)
                break
            if stop.requested():
                raise Stopped(f"{stop.name}: stopped after epoch {epoch + 1} of {t.epochs}; checkpoint {saved}",
                              ["rerun the same command to resume from it"])  # fmt: skip
    if accelerator.is_main_process and log_path.exists():
        curves(log_path, run / "curves.png")
    accelerator.wait_for_everyone()
    return state
