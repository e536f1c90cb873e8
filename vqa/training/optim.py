"""The optimiser and the randomness of training, set up as the references set them up (nanoGPT's
``configure_optimizers``, Accelerate's ``set_seed``): AdamW with decay on weight matrices only, the
warmup-stable-decay LR schedule, and a seed per (epoch, process).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from accelerate.utils import set_seed
from torch import nn

from .schedule import WarmupStableDecay

DECAYED = (nn.Linear, nn.Conv2d, nn.LSTM, nn.GRU, nn.LSTMCell)  # the modules whose weight matrices AdamW decays


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's groups as nanoGPT's ``configure_optimizers`` makes them: weight decay on the weight matrices of the
    linear, conv and recurrent layers only; none on biases, norms, embeddings and the single gates and scales.

    Why: decay pulls a parameter towards 0. A matrix's scale is free (what follows is normalised or learned), but
    a bias, a LayerNorm gain, a word vector or a counting gate's offset is a value the model needs: decaying it
    biases the model, and the embeddings of rare words, which get few gradients, would fade."""
    decayed = {id(p) for m in model.modules() if isinstance(m, DECAYED)
               for name, p in m.named_parameters(recurse=False) if name.startswith("weight")}  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, t: Any, batches: int) -> tuple[Any, WarmupStableDecay, Any, int]:
    """AdamW over ``param_groups``, the schedule and its ``LambdaLR``, for ``batches`` loader batches an epoch:
    -> (optimizer, schedule, scheduler, optimizer steps per epoch)."""
    optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr, fused=True)
    steps_per_epoch = math.ceil(batches / t.grad_accum)
    schedule = WarmupStableDecay(int(t.warmup * steps_per_epoch))
    return optimizer, schedule, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule), steps_per_epoch


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed dropout and every other draw of an epoch from (seed, epoch, process): a function of those alone, so a
    resumed run draws what an uninterrupted one did, and each process its own masks (nanoGPT offsets its seed by
    rank; ``device_specific`` adds the process index). One process draws what it always did."""
    set_seed(seed + 1000 * (epoch + 1), device_specific=True)
