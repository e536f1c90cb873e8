"""The one place an ``Accelerator`` is made, so that every stage runs on the same devices with the same settings.

CPU when there is no GPU (Accelerate's own default would also pick an MPS or XPU device the pipeline does not
test). Training adds what only it needs: mixed precision, gradient accumulation, and ``split_batches`` so that
``train.batch_size`` is the global batch on 1 or N processes.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration


def make_accelerator(cfg: Any = None, training: bool = False) -> Accelerator:
    """The stage's Accelerator; ``training=True`` needs ``cfg`` and reads ``cfg.train`` (precision, accumulation)."""
    if not training:
        return Accelerator(cpu=not torch.cuda.is_available())
    t = cfg.train
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision="no" if t.mixed_precision == "fp32" else t.mixed_precision,
        gradient_accumulation_steps=t.grad_accum,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
