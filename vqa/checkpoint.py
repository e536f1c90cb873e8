"""Checkpoints on disk, written so that a crash never leaves one that looks complete.

``<run.dir>/checkpoints/``:
  epoch_003/        full training state after epoch 3 (Accelerate ``save_state``: model, optimizer, scheduler,
                    RNG) + meta.json (model spec) + trainer_state.json; written to ``.tmp_epoch_003`` and renamed
                    when complete
  epoch_003_batch_00017/
                    the same, saved when training was stopped (Ctrl-C, SIGTERM) 17 batches into epoch 4;
                    resuming skips those batches. Superseded (deleted) by the next end-of-epoch checkpoint
  best/             the best-on-val weights (model.safetensors) + meta.json (epoch, val accuracy, model spec,
                    feature store fingerprint): what evaluation and inspection load

Checkpoints are directories named by epoch, not Accelerate's automatic ``checkpoint_<i>`` naming: that counter
is not restored by ``load_state`` (accelerate #3306) and a half-written folder would be picked as the latest.
Model weights are safetensors, loaded without pickle.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from safetensors.torch import load_file, save_file

from .common.errors import VQAError, summary
from .common.files import atomic_write_dir, atomic_write_json, reached, recover_dir
from .data.tasks import TASKS, task_of
from .data.words import load_tokenizer
from .model import ModelSpec, VQAModel

STATE_DICT_PROBLEMS = ("size mismatch", "Missing key", "Unexpected key")  # the informative lines of load errors
EPOCH_DIR = re.compile(r"^epoch_(\d+)(?:_batch_(\d+))?$")


@dataclass
class TrainerState:
    """What a checkpoint holds beyond Accelerate's own state (weights, optimizer, scheduler, RNG): the counters a
    resumed run needs to continue exactly where the stopped one was. Saved as ``trainer_state.json``."""

    epoch: int = 0  # full epochs done
    batch: int = 0  # batches done of epoch ``epoch + 1`` when a signal stopped the run inside it, else 0
    step: int = 0  # optimizer steps done
    best_accuracy: float = -1.0  # best val accuracy so far, reached at ``best_epoch``
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last new best val accuracy
    best_loss: float | None = None  # lowest val loss so far
    progress_epoch: int = 0  # the last epoch with a new best val accuracy or a new lowest val loss
    cooldown_from: int = 0  # > 0: the LR falls to 0 from the end of this epoch (``schedule.py``)
    cooldown_epochs: int = 0  # ... over this many epochs, after which training stops
    stalled: bool = False  # the cooldown began because progress stopped (else: to end by train.epochs)
    loss_sum: list[float] = field(default_factory=lambda: [0.0, 0.0])  # a stopped epoch's [loss sum, examples]
    history: list[dict[str, Any]] = field(default_factory=list)  # one log row per epoch (train_log.jsonl)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainerState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """``[(epoch, path)]`` of the finished epoch checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [((int(m.group(1)), int(m.group(2) or 0)), p) for p in root.iterdir()
             if (m := EPOCH_DIR.match(p.name)) and p.is_dir() and (p / "trainer_state.json").is_file()]  # fmt: skip
    return [(key[0], p) for key, p in sorted(found)]


def checkpoint_name(epoch: int, batch: int = 0) -> str:
    """``epoch_003`` after 3 full epochs; ``epoch_003_batch_00017`` when stopped 17 batches into the next one."""
    return f"epoch_{epoch:03d}" + (f"_batch_{batch:05d}" if batch else "")


def remove_stale(root: Path) -> None:
    """Main process, at start: delete temp folders a killed run left behind (never trusted, never resumed)."""
    if root.is_dir():
        for p in root.glob(".tmp_*"):
            shutil.rmtree(p, ignore_errors=True)


def finalize(tmp: Path, name: str, trainer_state: TrainerState, meta: dict[str, Any], keep: int) -> Path:
    """Main process: mark a fully written ``save_state`` folder complete, rename it into place, prune old ones.

    ``trainer_state.json`` is written last: a folder without it is incomplete and never resumed from.
    """
    atomic_write_json(tmp / "meta.json", meta)
    atomic_write_json(tmp / "trainer_state.json", trainer_state.to_dict())
    final = tmp.parent / name
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for _, old in complete_checkpoints(tmp.parent)[:-1]:
        if "_batch_" in old.name:  # a stopped run's checkpoint, superseded by this later one
            shutil.rmtree(old, ignore_errors=True)
    for _, old in complete_checkpoints(tmp.parent)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_training_state(root: Path, keep: int, accelerator: Any, state: TrainerState, meta: dict[str, Any]) -> Path:
    """A full ``save_state`` of every process into a temp folder under ``root``, renamed into place once complete;
    the ``keep`` newest are kept."""
    name = checkpoint_name(state.epoch, state.batch)
    tmp = root / f".tmp_{name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    reached(f"checkpoint-written:{name}")  # the folder is full but not yet complete (no trainer_state.json)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        finalize(tmp, name, state, meta, keep)
    accelerator.wait_for_everyone()
    return root / name


def resume_training_state(root: Path, train: Any, accelerator: Any) -> TrainerState:
    """With ``train.resume=auto``: restore the last complete checkpoint under ``root`` into the prepared objects and
    return its trainer state; else (or when there is none) a fresh state."""
    done = complete_checkpoints(root)
    if train.resume != "auto" or not done:
        return TrainerState()
    path = done[-1][1]
    try:
        accelerator.load_state(str(path))
    except Exception as e:  # other model/config, truncated file, a pickle that is not plain tensors
        raise VQAError(f"cannot resume from {path}: {_load_problem(e)}",
                       [f"delete {path} to resume from an earlier checkpoint, or set train.resume=never "
                        "to start over"]) from None  # fmt: skip
    state = TrainerState.from_dict(json.loads((path / "trainer_state.json").read_text()))
    more = f" + {state.batch} batches" if state.batch else ""
    accelerator.print(f"resuming from {path} ({state.epoch} of {train.epochs} epochs{more} done)")
    return state


def _load_problem(e: Exception) -> str:
    """The one line of a ``load_state`` failure a user can act on."""
    import pickle

    if isinstance(e, pickle.UnpicklingError):  # torch's own text would suggest weights_only=False: never
        return "a file in it holds pickled objects that are not plain tensors (refused: weights-only loading)"
    return summary(e, STATE_DICT_PROBLEMS)


def save_best(model: VQAModel, root: Path, meta: dict[str, Any]) -> None:
    """Weights (safetensors) + meta.json into ``best/``, swapped in atomically."""

    def write(tmp: str) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(Path(tmp) / "model.safetensors"))
        atomic_write_json(Path(tmp) / "meta.json", {**meta, "spec": model.spec.to_dict()})

    atomic_write_dir(root / "best", write)


def resolve(root: Path, which: str) -> Path:
    """``best`` | ``last`` (of the checkpoints under ``root``) | a path -> the folder holding model.safetensors."""
    if which == "best":
        recover_dir(root / "best")  # a kill in the middle of swapping in a new best leaves the old one whole
        path = root / "best"
    elif which == "last":
        done = complete_checkpoints(root)
        if not done:
            raise VQAError(f"no finished checkpoint in {root}: train first (`make train`)")
        path = done[-1][1]
    else:
        path = Path(which)
    if not (path / "model.safetensors").is_file():
        raise VQAError(f"no model.safetensors in {path}: train first (`make train`) or check eval.checkpoint")
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """A checkpoint folder's ``meta.json`` ({} when it has none); an unreadable one is an error naming it."""
    meta_path = path / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    except (ValueError, UnicodeDecodeError) as e:
        raise VQAError(f"{meta_path}: not valid JSON ({e})") from None
    return meta if isinstance(meta, dict) else {}


def load_model(path: Path, spec: ModelSpec | None = None) -> tuple[VQAModel, dict[str, Any]]:
    """Rebuild the model from ``meta.json`` (or ``spec``) and load its safetensors weights."""
    meta_path = path / "meta.json"
    meta = read_meta(path)
    if spec is None:
        if "spec" not in meta:
            raise VQAError(f"{path} has no meta.json describing the model")
        try:
            spec = ModelSpec.from_dict(meta["spec"])  # refuses older model layouts, saying how to retrain
        except VQAError as e:
            raise type(e)(f"{meta_path}: {e.headline}", e.problems) from None
    if spec.task not in TASKS:
        raise VQAError(f"{meta_path}: a model for task {spec.task!r}, which this code does not know")
    model = task_of(spec.task).build_model(spec)
    try:
        state = load_file(str(path / "model.safetensors"))
    except Exception as e:  # truncated or not a safetensors file
        raise VQAError(f"cannot read {path / 'model.safetensors'}: {e}") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other shapes
        raise VQAError(f"{path} holds weights of another model: {summary(e, STATE_DICT_PROBLEMS)}") from None
    if missing or unexpected:
        raise VQAError(f"{path} holds weights of another model ({len(missing)} missing, {len(unexpected)} "
                       f"unexpected tensors, e.g. {(missing + unexpected)[:3]}); check model.* settings")  # fmt: skip
    return model.eval(), meta


class Trained(NamedTuple):
    """A trained model as a stage uses it: the weights, their meta.json, where they came from, the tokenizer."""

    model: VQAModel
    meta: dict[str, Any]
    path: Path
    tokenizer: Any


def load_trained(root: Path, which: str, tokenizer_dir: Path, task: str) -> Trained:
    """Checkpoint ``which`` (``eval.checkpoint``) under ``root`` with the run's tokenizer, for ``task``.

    The checkpoint's embedding must fit the run's tokenizer: a model copied from another run would otherwise
    index past its embedding table in the middle of evaluation.
    """
    path = resolve(root, which)
    model, meta = load_model(path)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise VQAError(f"no tokenizer in {tokenizer_dir}: train first (`make train`)")
    tokenizer = load_tokenizer(tokenizer_dir)
    if model.spec.vocab_size != len(tokenizer):
        raise VQAError(f"{path} was trained with a {model.spec.vocab_size}-word vocabulary, {tokenizer_dir} has "
                       f"{len(tokenizer)}: the checkpoint belongs to another run (check eval.checkpoint)")  # fmt: skip
    if model.spec.task != task:
        raise VQAError(f"{path} is a {model.spec.task} model and data.task is {task}: use the config it "
                       f"was trained with")  # fmt: skip
    return Trained(model, meta, path, tokenizer)
