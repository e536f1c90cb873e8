"""Benchmarks that print ratios measured in one run, so a noisy machine cannot make them flaky.

Extraction: end-to-end images/s of the features stage's own loop (decode + resize in DataLoader workers, forward,
fp16 shard writes) against the pure forward pass of the same backbone, batch and precision on pixels already in
memory. The ratio says how much of the hardware's speed the pipeline keeps.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from .backbones import build_backbone
from .config import Config, load_config
from .extract import forward, make_job, run_job, store_settings
from .features import features_dir


def _median_rate(fn: Any, n: int, repeats: int) -> float:
    """Median images/s of ``fn()`` (which processes ``n`` images) over ``repeats`` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def bench_extraction(cfg: Config, image_ids: list[int], paths: dict[int, Path], backbone_name: str, size: int,
                     precision: str, repeats: int = 3) -> dict[str, Any]:  # fmt: skip
    """Pure forward vs end-to-end extraction of ``image_ids`` at ``size``; random init (speed is the same)."""
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    device = accelerator.device
    backbone = build_backbone(backbone_name, size, pretrained=False)
    backbone.module.to(device, memory_format=torch.channels_last)
    bs, n = cfg.features.batch_size, len(image_ids)
    pixels = torch.randint(0, 256, (bs, 3, size, size), dtype=torch.uint8)
    batches = -(-n // bs)

    def pure() -> None:
        for _ in range(batches):
            forward(backbone, pixels, precision, device)

    with tempfile.TemporaryDirectory() as tmp:
        f = cfg.features
        run_cfg = load_config(None, [f"run.dir={tmp}", f"features.image_size={size}", f"features.batch_size={bs}",
                                     f"features.num_workers={f.num_workers}", f"features.shard_size={n}"])  # fmt: skip
        settings = store_settings(run_cfg, backbone, precision, image_ids)
        features_dir(run_cfg).mkdir(parents=True)
        job = make_job([0], image_ids, paths, n, bs)

        def end_to_end() -> None:
            run_job(job, backbone, run_cfg, settings, accelerator, {}, progress=False)

        e2e = _median_rate(end_to_end, n, repeats)
    fwd = _median_rate(pure, batches * bs, repeats)
    return {"backbone": backbone_name, "image_size": size, "precision": precision, "batch_size": bs, "images": n,
            "forward_img_s": fwd, "end_to_end_img_s": e2e, "ratio": e2e / fwd}  # fmt: skip
