"""``make bench``: how much of the machine each stage keeps, as ratios measured in one run (fastest of repeats).

Extraction: end-to-end images/s of the features stage's own loop (decode + resize, forward, fp16 shard writes)
against (a) the pure forward pass of the same backbone, batch and precision on pixels already in memory and
(b) the roofline: the backbone's FLOPs per image x images/s, divided by this device's measured matmul peak in
the same precision (convolutions run on the same GEMM kernels, so the peak is the most a backbone can get).
Training: the training stage's own ``train_one_epoch`` (forward, answer and box losses, backward, clipping, AdamW,
LR schedule) over a synthetic Visual7W-shape store (4.86 questions per image by default), in both ``train.batching``
modes: questions/s with the real loader against the same batches already in memory (the loader's overhead), store
bytes read per epoch against the rows its images hold, FLOPs per question and achieved FLOP/s against the fp32
GEMM peak measured in the same run. Evaluation questions/s.
Memory: peak RSS of a training epoch over a synthetic Visual7W-shape store (2048 x 14 x 14 fp16) of S and 4 S
images, each in a fresh process: the reader must not make resident memory grow with the store.
"""

from __future__ import annotations

import copy
import math
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..accel import make_accelerator, native_bf16
from ..checkpoint import TrainerState
from ..config import Config, load_config
from ..features.backbones import Backbone, build_backbone
from ..features.extract import forward, make_job, normalize, run_job, store_settings
from ..features.store import FeatureReader, features_dir
from ..run import Run
from ..training.loop import train_one_epoch, train_step, validate
from ..training.setup import Training, build_training
from .inputs import synthetic_qa, synthetic_store


def timed(fns: Sequence[Callable[[], Any]], repeats: int) -> list[list[float]]:
    """Seconds of each of ``repeats`` runs of each ``fn``, run interleaved after one warm-up each.

    Why interleaved: drifts in machine speed hit both sides of a ratio alike."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return times


def fastest(fns: Sequence[Callable[[], Any]], repeats: int) -> list[float]:
    """Seconds of the fastest of ``repeats`` interleaved runs of each ``fn``: on a shared machine noise only ever
    adds time, so the least disturbed run is the best estimate of each cost."""
    return [min(t) for t in timed(fns, repeats)]


def spread(times: Sequence[float]) -> float:
    """(slowest - fastest) / fastest of repeated runs: how far one run can be from the figure reported."""
    return (max(times) - min(times)) / min(times)


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


# ------------------------------------------------------------------------------------------------ training
def training_setup(cfg: Config, reader: FeatureReader, n_questions: int, batching: str, batch_size: int,
                   per_image: float = 1.0, vocab: int = 3000, precision: str = "fp32") -> Training:  # fmt: skip
    """The training stage's own ``Training`` (model from ``cfg.model``, loaders, AdamW, schedule, box losses) over
    ``n_questions`` synthetic questions on ``n_questions / per_image`` images of ``reader``, in ``precision``
    (Accelerate keeps one mixed-precision setting per process: one precision per process)."""
    cfg = copy.deepcopy(cfg)
    cfg.train.batching, cfg.train.batch_size, cfg.train.mixed_precision = batching, batch_size, precision
    ids = sorted(reader.index)[: max(1, round(n_questions / per_image))]
    table = synthetic_qa(ids, vocab, cfg.seed, n_questions, cells=reader.grid[1] * reader.grid[2])
    run = Run(cfg)
    model = run.task.build_model(run.task.model_spec(cfg, vocab, reader.grid))
    return build_training(run, make_accelerator(cfg, training=True), model, table, table, reader, data={})


def _rnn_flop(x: Sequence[int], weights: Sequence[Sequence[int]]) -> int:
    """A fused RNN layer's forward: every token of ``x`` [.., E] through every gate matrix ([G*H, E] input and
    [G*H, H] state weights of each layer and direction; the biases are the 1-D entries), 2 FLOPs per multiply-add.
    oneDNN's (the CPU path of a padded LSTM/GRU) and cuDNN's RNN ops have no formula in torch's counter."""
    return 2 * math.prod(x[:-1]) * sum(w[0] * w[1] for w in weights if len(w) == 2)


def step_gflop(tr: Training) -> float:
    """FLOPs of one real training step (forward, the losses, backward) per question, in GFLOP (2 per MAC).

    Counted on the mode's own batch: with image-major batches the grid projection runs once per image, so a
    question costs fewer FLOPs than in per-question batches, and FLOP/s are counted on what actually ran."""
    batch = next(iter(tr.train_loader))
    return count_flops(lambda: train_step(tr, batch)) / len(batch["label"]) / 1e9


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` as torch's FlopCounterMode counts them, plus oneDNN's and cuDNN's RNN layers."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    onednn = lambda x, w_ih, w_hh, *_, **__: _rnn_flop(x, (w_ih, w_hh))  # noqa: E731  (weights: separate args)
    cudnn = lambda x, weights, *_, **__: _rnn_flop(x, weights)  # noqa: E731  (weights: one list)
    twice = lambda f: lambda *a, **k: 2 * f(*a, **k)  # noqa: E731  (backward: input and weight gradients)
    rnn = {aten.mkldnn_rnn_layer: onednn, aten.mkldnn_rnn_layer_backward: twice(onednn),
           aten._cudnn_rnn: cudnn, aten._cudnn_rnn_backward: twice(cudnn)}  # fmt: skip
    with FlopCounterMode(display=False, custom_mapping=rnn) as counter:
        fn()
    return counter.get_total_flops()


def bench_batching(tr: Training, reader: FeatureReader, repeats: int) -> dict[str, Any]:
    """``train_one_epoch`` with the real loader vs the same batches in memory; store bytes read per epoch."""
    n = len(tr.train_loader) * tr.cfg.train.batch_size  # drop_last
    epoch = lambda batches=None: train_one_epoch(tr, TrainerState(), 0, batches=batches, progress=False)  # noqa: E731
    reader.bytes_read = 0
    waits = [epoch().data_wait]  # first: nothing read yet in this process
    read = reader.bytes_read / (len(set(tr.train_examples.columns["image_id"])) * reader._row_bytes)
    if tr.cfg.train.num_workers:  # the rows were read by the workers' copies of the reader: not counted here
        read = None
    tr.train_loader.set_epoch(0)
    in_memory = list(tr.train_loader)  # the very batches the loader makes, collated once
    real, memory = timed([lambda: waits.append(epoch().data_wait), lambda: epoch(in_memory)], repeats)
    best_real, best_memory = min(real), min(memory)
    return {"questions": n, "loader_q_s": n / best_real, "in_memory_q_s": n / best_memory, "spread": spread(real),
            "loader_overhead": 1 - best_memory / best_real, "data_wait": statistics.median(waits),
            "bytes_read_over_rows": read}  # fmt: skip


def training_modes(cfg: Config, store: str, n_questions: int, batch_size: int, repeats: int, per_image: float,
                   precision: str) -> dict[str, Any]:  # fmt: skip
    """Both batching modes of the real training epoch in ``precision``: questions/s, the FLOPs each mode runs per
    question, achieved FLOP/s against the GEMM peak of the same precision measured here, and evaluation q/s."""
    reader = FeatureReader(store)
    modes, peak = {}, None
    for batching in ("image", "question"):
        tr = training_setup(cfg, reader, n_questions, batching, batch_size, per_image, precision=precision)
        peak = peak or matmul_peak(precision, tr.accelerator.device)["peak"]  # (the run's own Accelerate state)
        m = bench_batching(tr, reader, repeats)
        gflop = step_gflop(tr)
        modes[batching] = {**m, "gflop_per_question": gflop, "gflop_s": m["loader_q_s"] * gflop,
                           "peak_ratio": m["loader_q_s"] * gflop / peak}  # fmt: skip
        print(f"  {precision}, train.batching={batching}: {m['loader_q_s']:.0f} questions/s "
              f"(spread of {repeats} runs {m['spread']:.1%})", flush=True)  # fmt: skip
    (evaluation,) = fastest([lambda: validate(tr)], repeats)
    image, question = modes["image"], modes["question"]
    return {"precision": precision, "grid": list(reader.grid), "peak_gflop_s": peak, "modes": modes,
            "image_over_question": image["loader_q_s"] / question["loader_q_s"],
            # the most image-major batches can gain at equal FLOP/s: the FLOPs they save per question
            "flop_ceiling": question["gflop_per_question"] / image["gflop_per_question"],
            "eval_q_s": len(tr.val_loader.dataset) / evaluation}  # fmt: skip


def bench_training(cfg: Config, store: str, n_questions: int, batch_size: int, repeats: int,
                   per_image: float) -> dict[str, Any]:  # fmt: skip
    """fp32 in this process, and bf16 (where the hardware has it) in a fresh spawned one: Accelerate's
    mixed-precision setting is fixed per process. The image-major fp32 figures also sit at the top level."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    fp32 = training_modes(cfg, store, n_questions, batch_size, repeats, per_image, "fp32")
    out = {**fp32["modes"]["image"], **fp32, "batch_size": batch_size,
           "num_workers": cfg.train.num_workers, "questions_per_image": per_image, "bf16": None}  # fmt: skip
    if native_bf16()[0]:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            bf16 = pool.submit(training_modes, cfg, store, n_questions, batch_size, repeats, per_image, "bf16")
            out["bf16"] = bf16.result()
        out["bf16_over_fp32"] = out["bf16"]["modes"]["image"]["loader_q_s"] / out["loader_q_s"]
    return out


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def training_epoch_rss(cfg: Config, store: str, batch_size: int) -> dict[str, Any]:
    """In a fresh process: one training epoch over every image of ``store``; its peak RSS (MB)."""
    reader = FeatureReader(store)
    tr = training_setup(cfg, reader, len(reader), "image", batch_size)
    start = time.perf_counter()
    train_one_epoch(tr, TrainerState(), 0, progress=False)
    return {"images": len(reader), "store_gb": len(reader) * reader._row_bytes / 1e9,
            "questions": len(tr.train_loader) * batch_size, "seconds": time.perf_counter() - start,
            "peak_rss_mb": _peak_rss_mb()}  # fmt: skip


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
