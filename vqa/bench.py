"""``make bench``: how much of the machine each stage keeps, as ratios measured in one run (fastest of repeats).

Extraction: end-to-end images/s of the features stage's own loop (decode + resize, forward, fp16 shard writes)
against (a) the pure forward pass of the same backbone, batch and precision on pixels already in memory and
(b) the roofline: the backbone's FLOPs per image x images/s, divided by this device's measured matmul peak in
the same precision (convolutions run on the same GEMM kernels, so the peak is the most a backbone can get).
Training: questions/s of a training step fed by the real loader (feature rows read from the store, collated)
against the same batches already in memory; the gap is the loader's overhead. Evaluation questions/s.
Memory: peak RSS of a training epoch over a synthetic Visual7W-shape store (2048 x 14 x 14 fp16) of S and 4 S
images, each in a fresh process: the reader must not make resident memory grow with the store.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .accel import make_accelerator
from .backbones import Backbone, build_backbone
from .config import Config, load_config
from .data import N_CANDIDATES, QUESTION_TYPES
from .extract import forward, make_job, normalize, run_job, store_settings
from .features import DTYPE, FORMAT, FeatureReader, ShardWriter, features_dir, fingerprint, write_manifest
from .io import save_figure
from .loader import EpochSampler, QAExamples, collate, model_inputs
from .model import ModelSpec, VQAModel

VISUAL7W_GRID = (2048, 14, 14)  # ResNet-152 at 448: what the real store holds per image


def fastest(fns: Sequence[Callable[[], Any]], repeats: int) -> list[float]:
    """Seconds of the fastest of ``repeats`` runs of each ``fn``, run interleaved after one warm-up each.

    Why this for ratios: drifts in machine speed hit both sides alike when interleaved, and on a shared machine
    noise only ever adds time, so the least disturbed run is the best estimate of each cost.
    """
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ extraction
def matmul_peak(precision: str, device: torch.device, n: int = 2048, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of the two GEMM paths a backbone can use, in ``precision`` (fp32 | bf16 | fp16), and the best.

    ``torch.matmul`` (``n x n``) and a 1x1 convolution (the same GEMM, run by oneDNN/cuDNN like every conv in a
    backbone): on some CPUs the BLAS behind ``matmul`` reaches half of what oneDNN's conv kernels do, and a
    "peak" below what the backbone achieves would say nothing.
    """
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    x = torch.randn(16, 1024, 28, 28, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(1024, 1024, 1, bias=False).to(device, dtype, memory_format=torch.channels_last)

    def mm() -> None:
        torch.matmul(a, b)
        _sync(device)

    def conv1x1() -> None:
        with torch.inference_mode():
            conv(x)
        _sync(device)

    t_mm, t_conv = fastest([mm, conv1x1], repeats)
    out = {"matmul": 2 * n**3 / t_mm / 1e9, "conv1x1": 2 * 16 * 28 * 28 * 1024**2 / t_conv / 1e9}
    return {**out, "peak": max(out.values())}


def backbone_gflop(backbone: Backbone, size: int) -> float:
    """FLOPs of one image's forward (2 per multiply-add, as torch's FlopCounterMode counts), in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    module = backbone.module
    x = torch.zeros(1, 3, size, size, device=next(module.parameters()).device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(normalize(x.to(torch.uint8), backbone.mean, backbone.std))
    return counter.get_total_flops() / 1e9


def bench_extraction(cfg: Config, image_ids: list[int], paths: dict[int, Path], backbone_name: str, size: int,
                     precision: str, batch_size: int, repeats: int, peak: float,
                     compiled: bool = False) -> dict[str, Any]:  # fmt: skip
    """Pure forward vs end-to-end extraction of ``image_ids`` at ``size``; random init (speed is the same)."""
    accelerator = make_accelerator()
    device = accelerator.device
    backbone = build_backbone(backbone_name, size, pretrained=False)
    backbone.module.to(device, memory_format=torch.channels_last)
    backbone.compiled = compiled  # compiled on the warm-up pass, which is not timed
    n = len(image_ids)
    pixels = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    batches = -(-n // batch_size)

    def pure() -> None:
        for _ in range(batches):
            forward(backbone, pixels, precision, device)

    with tempfile.TemporaryDirectory() as tmp:
        run_cfg = load_config(None, [f"run.dir={tmp}", f"features.image_size={size}",
                                     f"features.batch_size={batch_size}", f"features.shard_size={n}",
                                     f"features.num_workers={cfg.features.num_workers}"])  # fmt: skip
        settings = store_settings(run_cfg, backbone, precision, image_ids)
        features_dir(run_cfg).mkdir(parents=True)
        job = make_job([0], image_ids, paths, n, batch_size)
        t_e2e, t_fwd = fastest([lambda: run_job(job, backbone, run_cfg, settings, accelerator, {}, progress=False),
                                pure], repeats)  # fmt: skip
    e2e, fwd = n / t_e2e, batches * batch_size / t_fwd
    gflop = backbone_gflop(backbone, size)
    return {"backbone": backbone_name, "image_size": size, "precision": precision, "batch_size": batch_size,
            "compiled": compiled, "images": n, "forward_img_s": fwd, "end_to_end_img_s": e2e, "ratio": e2e / fwd,
            "gflop_per_image": gflop, "end_to_end_gflop_s": e2e * gflop, "peak_gflop_s": peak,
            "roofline_ratio": e2e * gflop / peak}  # fmt: skip


# ------------------------------------------------------------------------------------------------ synthetic data
def synthetic_store(root: Path, n_images: int, grid: tuple[int, int, int] = VISUAL7W_GRID,
                    shard_size: int = 256, seed: int = 0) -> FeatureReader:  # fmt: skip
    """A feature store in the real format (shards, markers, manifest) holding random fp16 grids, image ids 1..n."""
    settings = {"format": FORMAT, "backbone": "synthetic", "weights": "random", "pretrained": False,
                "image_size": grid[1] * 32, "precision": "fp16", "grid": list(grid), "dtype": np.dtype(DTYPE).name,
                "preprocessing": {}, "shard_size": shard_size, "images_sha1": f"synthetic-{n_images}",
                "n_images": n_images}  # fmt: skip
    fp = fingerprint(settings)
    block = np.random.default_rng(seed).standard_normal((min(64, n_images), *grid), dtype=np.float32).astype(DTYPE)
    ids = list(range(1, n_images + 1))
    n_shards = -(-n_images // shard_size)
    for shard in range(n_shards):
        writer = ShardWriter(root, shard, ids[shard * shard_size : (shard + 1) * shard_size], grid)
        for start in range(0, len(writer.ids), len(block)):
            rows = list(range(start, min(start + len(block), len(writer.ids))))
            writer.write(rows, block[: len(rows)])
        writer.finish(fp, 0, 1)
    write_manifest(root, settings, n_shards, 0.0)
    return FeatureReader(root)


def synthetic_qa(image_ids: list[int], vocab: int, seed: int = 0) -> Any:
    """One tokenised question per image with 4 candidates, lengths like Visual7W's (questions 5-12 words)."""
    from datasets import Dataset

    rng = np.random.default_rng(seed)

    def words(lo: int, hi: int) -> list[int]:
        return rng.integers(2, vocab, rng.integers(lo, hi + 1)).tolist()

    return Dataset.from_dict({
        "qa_id": list(range(len(image_ids))), "image_id": image_ids, "split": ["train"] * len(image_ids),
        "type": rng.integers(0, len(QUESTION_TYPES), len(image_ids)).tolist(),
        "question_ids": [words(5, 12) for _ in image_ids],
        "candidate_ids": [[words(1, 6) for _ in range(N_CANDIDATES)] for _ in image_ids],
        "label": [0] * len(image_ids), "target": [[] for _ in image_ids],
    })  # fmt: skip


# ------------------------------------------------------------------------------------------------ training
class _Trainer:
    """The training stage's step (forward, loss, backward, AdamW) on a model built from ``cfg.model``."""

    def __init__(self, cfg: Config, reader: FeatureReader, n_questions: int, batch_size: int, vocab: int = 3000):
        self.accelerator = make_accelerator()
        model = VQAModel(ModelSpec.from_config(cfg, vocab, reader.grid))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        ids = sorted(reader.index)[:n_questions]
        self.examples = QAExamples(synthetic_qa(ids, vocab, cfg.seed), reader, cfg.seed, train=True)
        self.batch_size, self.workers = batch_size, cfg.train.num_workers
        self.n = len(ids) // batch_size * batch_size

    def loader(self) -> DataLoader:
        return DataLoader(self.examples, batch_size=self.batch_size, sampler=EpochSampler(len(self.examples), 0),
                          collate_fn=collate, num_workers=self.workers, drop_last=True)  # fmt: skip

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        batch = {k: v.to(self.accelerator.device, non_blocking=True) for k, v in batch.items()}
        scores, _ = self.model(**model_inputs(batch))  # [b, 4]
        self.accelerator.backward(F.cross_entropy(scores, batch["label"]))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        _sync(self.accelerator.device)

    def epoch(self, batches: Any = None) -> float:
        """One pass (the real loader unless ``batches`` is given); returns the seconds spent waiting for batches."""
        wait, it = 0.0, iter(batches if batches is not None else self.loader())
        while True:
            start = time.perf_counter()
            batch = next(it, None)
            wait += time.perf_counter() - start
            if batch is None:
                return wait
            self.step(batch)

    def evaluate(self) -> None:
        self.model.eval()
        with torch.inference_mode():
            for batch in self.loader():
                self.model(**model_inputs({k: v.to(self.accelerator.device) for k, v in batch.items()}))
        _sync(self.accelerator.device)
        self.model.train()


def bench_training(cfg: Config, reader: FeatureReader, n_questions: int, batch_size: int,
                   repeats: int) -> dict[str, Any]:  # fmt: skip
    """Questions/s with the real loader vs the same batches in memory, and evaluation questions/s."""
    t = _Trainer(cfg, reader, n_questions, batch_size)
    in_memory = list(t.loader())  # the very batches the loader makes, collated once
    waits: list[float] = []
    best_real, best_memory = fastest([lambda: waits.append(t.epoch()), lambda: t.epoch(in_memory)], repeats)
    (evaluation,) = fastest([t.evaluate], repeats)
    return {"questions": t.n, "batch_size": batch_size, "grid": list(reader.grid), "num_workers": t.workers,
            "loader_q_s": t.n / best_real, "in_memory_q_s": t.n / best_memory,
            "loader_overhead": 1 - best_memory / best_real, "data_wait": statistics.median(waits) / best_real,
            "eval_q_s": t.n / evaluation}  # fmt: skip


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def training_epoch_rss(cfg: Config, store: str, batch_size: int) -> dict[str, Any]:
    """In a fresh process: one training epoch over every image of ``store``; its peak RSS (MB)."""
    reader = FeatureReader(store)
    t = _Trainer(cfg, reader, len(reader), batch_size)
    start = time.perf_counter()
    t.epoch()
    return {"images": len(reader), "store_gb": len(reader) * reader._row_bytes / 1e9, "questions": t.n,
            "seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb()}  # fmt: skip


def bench_memory(cfg: Config, workdir: Path, n_images: int, grid: tuple[int, int, int],
                 batch_size: int) -> list[dict[str, Any]]:  # fmt: skip
    """Peak RSS of a training epoch on stores of S and 4 S images, each epoch in its own spawned process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    rows = []
    for n in (n_images, 4 * n_images):
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            synthetic_store(Path(tmp), n, grid)
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows.append(pool.submit(training_epoch_rss, cfg, tmp, batch_size).result())
    return rows


# ------------------------------------------------------------------------------------------------ report
def chart(results: dict[str, Any], out: Path) -> Path:
    """One PNG: extraction (forward vs end to end), training (loader vs in memory, eval), peak RSS at S and 4 S."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    ext = results.get("extraction", [])
    if ext:
        x = np.arange(len(ext))
        axes[0].bar(x - 0.2, [r["forward_img_s"] for r in ext], 0.4, label="pure forward")
        axes[0].bar(x + 0.2, [r["end_to_end_img_s"] for r in ext], 0.4, label="end to end")
        short = {"efficientnet_lite0": "lite0", "resnet152": "r152"}
        axes[0].set_xticks(x, [f"{short.get(r['backbone'], r['backbone'])}@{r['image_size']}\n{r['precision']}"
                               + ("\ncompiled" if r.get("compiled") else "") for r in ext], fontsize=7)  # fmt: skip
        axes[0].set(yscale="log", ylabel="images/s", title="feature extraction")
        axes[0].legend(fontsize=7)
    tr = results.get("training")
    if tr:
        axes[1].bar(["real loader", "in memory", "eval"], [tr["loader_q_s"], tr["in_memory_q_s"], tr["eval_q_s"]],
                    color=["C0", "C1", "C2"])  # fmt: skip
        axes[1].set(ylabel="questions/s", title=f"training (grid {'x'.join(map(str, tr['grid']))})")
    mem = results.get("memory", [])
    if mem:
        labels = [f"{name}: {m['images']} images\n{m['store_gb']:.2f} GB"
                  for name, m in zip(("S", "4 S"), mem, strict=True)]  # fmt: skip
        axes[2].bar(labels, [m["peak_rss_mb"] for m in mem], color="C3")
        axes[2].set(ylabel="peak RSS (MB)", title="training epoch: RSS vs store size")
    for ax in axes:
        if not ax.has_data():
            ax.set_axis_off()
    fig.tight_layout()
    return save_figure(out, fig)
