"""The one place an ``Accelerator`` is made, so that every stage runs on the same devices with the same settings.

CPU when there is no GPU (Accelerate's own default would also pick an MPS or XPU device the pipeline does not
test). Training adds what only it needs: mixed precision, gradient accumulation, ``split_batches`` so that
``train.batch_size`` is the global batch on 1 or N processes, and the experiment tracker (``train.log_with``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import ProjectConfiguration

from .common.errors import VQAError


def make_accelerator(cfg: Any = None, training: bool = False) -> Accelerator:
    """The stage's Accelerator; ``training=True`` needs ``cfg`` and reads ``cfg.train`` (precision, accumulation)."""
    if not training:
        return Accelerator(cpu=not torch.cuda.is_available())
    t = cfg.train
    tracker = None if t.log_with == "none" else t.log_with
    if tracker == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise VQAError("train.log_with=tensorboard needs the tensorboard package: pip install -e '.[tensorboard]' "
                       "(or set train.log_with=none)")  # fmt: skip
    precision, _ = training_precision(t.mixed_precision)
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision="no" if precision == "fp32" else precision,
        gradient_accumulation_steps=t.grad_accum,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        log_with=tracker,
        project_config=ProjectConfiguration(project_dir=str(Path(cfg.run.dir)), logging_dir=tracking_dir(cfg)),
    )


def native_bf16() -> tuple[bool, str]:
    """Whether this machine's device computes bf16 natively, and what says so: a CUDA GPU that supports it, or a
    CPU with AVX512-BF16 or AMX (elsewhere bf16 is emulated, slower than fp32). Flags, never a timing."""
    if torch.cuda.is_available():
        ok = torch.cuda.is_bf16_supported()
        return ok, f"{torch.cuda.get_device_name()} {'supports' if ok else 'lacks'} bf16"
    if torch.cpu._is_amx_tile_supported():
        return True, "this CPU has AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return True, "this CPU has AVX512-BF16"
    return False, "this CPU has neither AVX512-BF16 nor AMX"


def training_precision(requested: str) -> tuple[str, str]:
    """``train.mixed_precision`` -> (fp32 | bf16 | fp16, the log's reason): ``auto`` is bf16 where it is native."""
    if requested != "auto":
        return requested, "train.mixed_precision"
    ok, why = native_bf16()
    return ("bf16" if ok else "fp32"), f"auto: {why}"


def precision_line(train: Any, accelerator: Accelerator) -> str:
    """The training log's first line: the precision, why, and where ("training in fp32 (auto: ...), 1 process(es)
    on cpu")."""
    precision, why = training_precision(train.mixed_precision)
    return f"training in {precision} ({why}), {accelerator.num_processes} process(es) on {accelerator.device.type}"


def tracking_dir(cfg: Any) -> str:
    """``<run.dir>/tb``: TensorBoard's event files (one subfolder per run name, ``train``)."""
    return str(Path(cfg.run.dir) / "tb")


def tracker_config(cfg: Any) -> dict[str, Any]:
    """The run's config as TensorBoard hparams: flat ``section.key`` -> int | float | str | bool (lists as text)."""
    out: dict[str, Any] = {}
    for section, values in cfg.to_dict().items():
        for key, value in (values.items() if isinstance(values, dict) else [("", values)]):
            name = f"{section}.{key}" if key else section
            out[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return out


def tracked(row: dict[str, Any]) -> dict[str, float]:
    """An epoch's log row as tracker scalars: losses, val accuracy overall and per question type, LR, speed."""
    out = {"loss/train": row["train_loss"], "loss/val": row["val_loss"], "val_accuracy/all": row["val_accuracy"],
           "lr": row["lr"], "questions_per_s": row["questions_per_s"], "data_wait": row["data_wait"]}
    out.update({f"val_accuracy/{t}": float(a) for t, a in row["val_per_type"].items() if a is not None})
    return out
