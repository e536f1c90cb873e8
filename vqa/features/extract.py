"""The features stage: pre-flight checks, shard assignment, fast extraction, manifest.

Order of work, chosen so that nothing finished is ever lost and nothing half-done is ever trusted:
  1. main process: refuse a store built with other settings (or wipe it with ``features.overwrite=true``), check
     the disk has room, record settings.json;
  2. every process: list the shards still to do (before anyone writes), take its part with
     ``split_between_processes``, pre-flight its images (header only, seconds), share the problems;
  3. every process: extract its shards (decode + resize in DataLoader workers, channels_last forward under
     ``inference_mode`` and bf16 weights where supported, fp16 memmap rows), each shard finished on its own;
  4. main process: gather the shard markers into manifest.json. Unusable images stop the run with the full list
     (path + reason), unless ``features.on_error=skip``, which records them in the manifest as missing.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch.utils.data import DataLoader, Dataset

from ..accel import native_bf16
from ..common.errors import VQAError, summary
from ..common.files import reached
from ..common.progress import progress_bar, track
from .backbones import Backbone, build_backbone
from .images import BadImage, check_image, load_image, normalize, preprocessing, to_tensor
from .preflight import bad_lines, prepare_store, served_by_store
from .store import DTYPE, FORMAT, ShardWriter, features_dir, file_size, fingerprint, read_marker, write_manifest


# ------------------------------------------------------------------------------------------------ settings
def resolve_precision(requested: str, device: torch.device) -> str:
    """'auto' -> bf16 where the hardware does it natively (CUDA Ampere+, CPUs with AVX512-BF16/AMX), else fp32."""
    if requested != "auto":
        if requested == "fp16" and device.type != "cuda":
            raise VQAError("features.precision=fp16 needs a GPU; use bf16 or fp32 on the CPU")
        return requested
    native, _ = native_bf16()
    if device.type == "cuda":
        return "bf16" if native else "fp16"
    return "bf16" if native else "fp32"


def resolve_workers(requested: int | str, device: torch.device, num_processes: int) -> int:
    """'auto': decode in the main process on a small CPU box, in worker processes otherwise.

    Why: on a CPU the forward pass already keeps every core busy; a decoding worker then preempts one of the
    OpenMP threads and every parallel op waits for it. Measured on 2 cores (EfficientNet-Lite0@224, bf16): 0.85 of
    the pure forward speed end to end with decoding inline, 0.70 with 2 workers. With a GPU, or many cores,
    decoding must run in parallel with the forward pass, so workers win.
    """
    if requested != "auto":
        return int(requested)
    cores = max(1, (os.cpu_count() or 1) // num_processes)
    if device.type == "cpu":
        return 0 if cores <= 4 else min(4, cores // 4)
    return min(8, max(1, cores - 1))


def store_settings(cfg: Any, backbone: Backbone, precision: str, image_ids: Sequence[int]) -> dict[str, Any]:
    """Everything that determines the stored numbers; two runs may share a store only if these are equal.
    (The images' own files are checked per shard: see ``_pending``.)"""
    f = cfg.features
    grid = backbone.grid_size(f.image_size)
    return {
        "format": FORMAT,
        "backbone": backbone.name,
        "weights": backbone.weights,
        "pretrained": backbone.weights != "random",
        "image_size": f.image_size,
        "precision": precision,
        "grid": [backbone.channels, grid, grid],
        "dtype": np.dtype(DTYPE).name,
        "preprocessing": preprocessing(f.image_size, backbone.mean, backbone.std),
        "shard_size": f.shard_size,
        "images_sha1": hashlib.sha1(",".join(map(str, image_ids)).encode()).hexdigest(),
        "n_images": len(image_ids),
        **({"compile": True} if f.compile else {}),  # fused kernels round differently; absent when off (old stores)
        **({"hypercolumn": list(f.hypercolumn)} if f.hypercolumn else {}),  # absent when off (old stores)
        **({"space_to_depth": list(f.space_to_depth)} if f.space_to_depth else {}),
    }


def build(cfg: Any) -> Backbone:
    f = cfg.features
    backbone = build_backbone(f.backbone, f.image_size, f.pretrained, f.weights, hypercolumn=f.hypercolumn,
                              space_to_depth=f.space_to_depth)  # fmt: skip
    backbone.compiled = f.compile
    return backbone


def forward(backbone: Backbone, pixels: torch.Tensor, precision: str, device: torch.device) -> np.ndarray:
    """``[b, 3, S, S]`` uint8 -> ``[b, C, H, W]`` fp16 numpy."""
    x = normalize(pixels.to(device, non_blocking=True), backbone.mean, backbone.std)  # [b, 3, S, S] float
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    with torch.inference_mode():
        try:
            y = backbone.in_dtype(dtype)(x.to(dtype))  # [b, C, H, W]
        except Exception as e:
            if not backbone.compiled:
                raise
            raise VQAError(f"features.compile=true: torch.compile failed ({summary(e)}); it needs a working C++ "
                           "compiler (g++). Set features.compile=false to run without it.") from None  # fmt: skip
    return y.to(torch.float16).contiguous().cpu().numpy()


# ------------------------------------------------------------------------------------------------ loading
class ImageFiles(Dataset):
    """Decodes and resizes in DataLoader workers; a bad image yields its reason instead of pixels."""

    def __init__(self, paths: Sequence[Path], size: int, max_pixels: int) -> None:
        self.paths, self.size, self.max_pixels = list(paths), size, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            return i, to_tensor(load_image(self.paths[i], self.size, self.max_pixels)), ""
        except BadImage as e:
            return i, None, str(e)


def collate_images(items: list[tuple[int, torch.Tensor | None, str]]) -> tuple[list[int], torch.Tensor | None, list]:
    """-> (indices of good images, their pixels [b, 3, S, S] uint8 or None, [(index, reason)] of bad ones)."""
    good = [(i, x) for i, x, _ in items if x is not None]
    bad = [(i, err) for i, x, err in items if x is None]
    pixels = torch.stack([x for _, x in good]) if good else None
    return [i for i, _ in good], pixels, bad


@dataclass
class Job:
    """What one process extracts: its shards, and the flat list of their images (batches never straddle shards,
    so every batch, and thus every number, is the same whatever the number of processes)."""

    shard_ids: dict[int, list[int]] = field(default_factory=dict)  # shard -> its image ids
    shard_sizes: dict[int, list[int]] = field(default_factory=dict)  # shard -> its images' file sizes
    ids: list[int] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    where: list[tuple[int, int]] = field(default_factory=list)  # flat index -> (shard, row)
    batches: list[list[int]] = field(default_factory=list)  # flat indices


def make_job(shards: Sequence[int], image_ids: Sequence[int], paths: dict[int, Path], shard_size: int,
             batch_size: int) -> Job:  # fmt: skip
    job = Job()
    for shard in shards:
        ids = list(image_ids[shard * shard_size : (shard + 1) * shard_size])
        start = len(job.ids)
        job.shard_ids[shard] = ids
        job.shard_sizes[shard] = [file_size(paths[i]) for i in ids]  # as read now: recorded in the marker
        job.ids += ids
        job.paths += [paths[i] for i in ids]
        job.where += [(shard, row) for row in range(len(ids))]
        job.batches += [list(range(start + b, start + min(b + batch_size, len(ids))))
                        for b in range(0, len(ids), batch_size)]  # fmt: skip
    return job


# ------------------------------------------------------------------------------------------------ stages
def run_job(job: Job, backbone: Backbone, cfg: Any, settings: dict[str, Any], accelerator: Accelerator,
            known_bad: dict[int, str], progress: bool = True) -> None:  # fmt: skip
    """Run the backbone over this process's shards, finishing each shard as soon as its last row is written."""
    f, root, fp = cfg.features, features_dir(cfg), fingerprint(settings)
    workers = resolve_workers(f.num_workers, accelerator.device, accelerator.num_processes)
    loader = DataLoader(
        ImageFiles(job.paths, f.image_size, f.max_pixels), batch_sampler=job.batches, collate_fn=collate_images,
        num_workers=workers, pin_memory=accelerator.device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )  # fmt: skip
    writers: dict[int, ShardWriter] = {}
    show = progress and accelerator.is_local_main_process
    bar = progress_bar(len(job.ids), "features", "img", disable=not show)
    for idx, pixels, bad in loader:
        shard = job.where[idx[0] if idx else bad[0][0]][0]
        if shard not in writers:
            writers[shard] = ShardWriter(root, shard, job.shard_ids[shard], settings["grid"], job.shard_sizes[shard])
        writer = writers[shard]
        if pixels is not None:
            writer.write([job.where[i][1] for i in idx], forward(backbone, pixels, settings["precision"],
                                                                 accelerator.device))  # fmt: skip
        for i, reason in bad:
            writer.fail(job.where[i][1], known_bad.get(job.ids[i], reason))
        bar.update(len(idx) + len(bad))
        if writer.left == 0:
            writer.finish(fp, accelerator.process_index, accelerator.num_processes)
            del writers[shard]
            reached(f"features:shard{shard}")
    bar.close()


def _pending(root: Path, n_shards: int, fp: str, on_error: str,
             paths: dict[int, Path]) -> tuple[list[int], list[int]]:  # fmt: skip
    """Shards to (re)do: not complete, holding images that failed last time (when bad images stop the run), or
    holding an image whose file size changed since the shard was written. Returns (pending, changed).

    Why sizes: a dataset regenerated under the same names (a new synthetic world, re-encoded JPEGs) must not be
    read through the features of its old pixels, and a fixed bad image must be extracted again; a stat per image
    catches both, where the image list alone did not. A copy of the images (rsync, another node) keeps the sizes."""
    pending, changed = [], []
    for s in range(n_shards):
        marker = read_marker(root, s, fp)
        if marker is None or (on_error == "stop" and marker["missing"]):
            pending.append(s)
        elif "sizes" in marker and marker["sizes"] != [file_size(paths[int(i)]) for i in marker["ids"]]:
            pending.append(s)  # (a marker from before sizes were recorded is trusted as before)
            changed.append(s)
    return pending, changed


def _gather(problems: dict[int, str]) -> dict[int, str]:
    """Union of every process's problems (identical on all processes, so all of them stop together)."""
    return {k: v for part in gather_object([problems]) for k, v in part.items()}


def decode_problem(path: Path, size: int, max_pixels: int) -> str | None:
    try:
        load_image(path, size, max_pixels)
    except BadImage as e:
        return str(e)
    return None


def extract_features(cfg: Any, images: Mapping[int, Path], accelerator: Accelerator) -> dict[str, Any]:
    """Extract the grid of each image of ``images`` ({image id: file}, e.g. ``Visual7W.image_paths()``): the
    store needs ids and files, not the questions. Returns a summary for the entry point."""
    start = time.perf_counter()
    f, root = cfg.features, features_dir(cfg)
    if not Path(cfg.data.images).is_dir():  # one line, not one "missing file" per image
        raise VQAError(f"image folder not found: {cfg.data.images} (data.images)")
    image_ids, paths = sorted(images), dict(images)
    backbone = build(cfg)
    backbone.module.to(accelerator.device, memory_format=torch.channels_last)
    settings = store_settings(cfg, backbone, resolve_precision(f.precision, accelerator.device), image_ids)
    served = None if f.overwrite else served_by_store(root, settings, image_ids, paths)
    if served is not None:  # a shared store over more images: nothing to extract
        return {"images": len(image_ids), "extracted_now": 0, "seconds": time.perf_counter() - start,
                "missing": {i: r for i, r in ((int(k), v) for k, v in served["missing"].items()) if i in paths},
                "settings": settings, "processes": accelerator.num_processes,
                "served_by": served["counts"]["images"]}  # fmt: skip
    fp, n_shards = fingerprint(settings), -(-len(image_ids) // f.shard_size)
    if accelerator.is_main_process:
        prepare_store(root, settings, f.overwrite)
    accelerator.wait_for_everyone()
    pending, changed = _pending(root, n_shards, fp, f.on_error, paths)
    accelerator.wait_for_everyone()  # everyone has listed the pending shards before anyone finishes one
    with accelerator.split_between_processes(pending) as mine:
        job = make_job(mine, image_ids, paths, f.shard_size, f.batch_size)
    bad = _gather({i: r for i in job.ids if (r := check_image(paths[i], f.max_pixels))})
    if bad and f.on_error == "stop":  # the run stops anyway: decode everything once to list *every* bad file
        bad = _gather({i: r for i in track(job.ids, "checking images", "img", disable=not accelerator.is_main_process)
                       if (r := decode_problem(paths[i], f.image_size, f.max_pixels))})  # fmt: skip
        raise VQAError(f"{len(bad)} unusable image(s); fix or remove them, or set features.on_error=skip:",
                       bad_lines(bad, paths))  # fmt: skip
    if accelerator.is_main_process and len(pending) < n_shards:
        print(f"resuming: {n_shards - len(pending)} of {n_shards} shards already done")
    if accelerator.is_main_process and changed:
        print(f"{len(changed)} shard(s) extracted again: their images changed since they were written "
              f"(file sizes differ), e.g. shard {changed[0]}")  # fmt: skip
    run_job(job, backbone, cfg, settings, accelerator, bad)
    accelerator.wait_for_everyone()
    markers = [read_marker(root, s, fp) or {"missing": {}} for s in range(n_shards)]
    failed = {int(k): v for m in markers for k, v in m["missing"].items()}
    if failed and f.on_error == "stop":
        raise VQAError(f"{len(failed)} image(s) could not be decoded; fix or remove them and rerun (finished shards "
                       "are kept), or set features.on_error=skip:", bad_lines(failed, paths))  # fmt: skip
    extracted = sum(gather_object([len(job.ids)]))
    seconds = time.perf_counter() - start
    if accelerator.is_main_process:
        write_manifest(root, settings, n_shards, seconds)
    accelerator.wait_for_everyone()
    return {"images": len(image_ids), "extracted_now": extracted, "seconds": seconds, "missing": failed,
            "settings": settings, "processes": accelerator.num_processes}  # fmt: skip
