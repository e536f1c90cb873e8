"""``make bench`` as a stage: run the parts of ``bench.py`` asked for, print their tables, check the targets, and
write ``<run.dir>/bench/bench.json`` and ``bench.png``. ``pipelines/bench.py`` only parses the flags.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..accel import native_bf16
from ..common.errors import VQAError
from ..common.files import atomic_write_json, atomic_write_text, save_figure
from ..run import Run
from .measure import bench_extraction, bench_memory, bench_training, matmul_peak, synthetic_store

TARGETS = {"extraction_vs_forward": 0.9, "roofline": 0.8, "loader_overhead": 0.10, "rss_growth": 1.1,
           "bytes_read_over_rows": 1.1, "image_over_question": 2.0, "training_peak_ratio": 0.5,
           "bf16_over_fp32": 1.5}  # fmt: skip


def extraction(cfg: Any, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    dataset = Run(cfg).dataset
    ids = dataset.image_ids()
    paths = {i: dataset.image_path(i) for i in ids}
    bf16 = native_bf16()[0]
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    peaks = {p: matmul_peak(p, device) for p in precisions}
    print("matmul peak (GFLOP/s; the better of torch.matmul and a 1x1 conv): " + ", ".join(
        f"{p} {g['peak']:.0f} (matmul {g['matmul']:.0f}, conv1x1 {g['conv1x1']:.0f})" for p, g in peaks.items()))
    print(f"{'backbone':<22}{'prec':>6}{'batch':>6}{'GFLOP/img':>10}{'forward':>9}{'end2end':>9}"
          f"{'e2e/fwd':>8}{'e2e/peak':>9}   (img/s)")  # fmt: skip
    backbones = [("efficientnet_lite0", 224, args.images, cfg.features.batch_size),
                 ("resnet152", 448, args.heavy_images, 8)]  # fmt: skip
    cases = [(name, size, n, bs, precision, False) for name, size, n, bs in backbones for precision in precisions]
    if not args.no_compile:  # features.compile=true on the heavy backbone, in the best precision
        cases.append(("resnet152", 448, args.heavy_images, 8, precisions[-1], True))
    rows = []
    for name, size, n, bs, precision, compiled in cases:
        r = bench_extraction(cfg, ids[:n], paths, name, size, precision, bs, args.repeats,
                                   peaks[precision]["peak"], compiled)  # fmt: skip
        rows.append(r)
        label = f"{name}@{size}" + (" compiled" if compiled else "")
        print(f"{label:<22}{precision:>6}{bs:>6}{r['gflop_per_image']:>10.2f}{r['forward_img_s']:>9.1f}"
              f"{r['end_to_end_img_s']:>9.1f}{r['ratio']:>8.2f}{r['roofline_ratio']:>9.2f}", flush=True)  # fmt: skip
    return rows


def training(cfg: Any, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        n_images = max(1, round(args.questions / args.questions_per_image))
        synthetic_store(Path(tmp), n_images, tuple(args.grid)).close()
        r = bench_training(cfg, tmp, args.questions, args.batch_size, args.repeats, args.questions_per_image)
    print(f"training step (train_one_epoch: {r['questions']} questions, {r['questions_per_image']} per image, batch "
          f"{r['batch_size']}, grid {'x'.join(map(str, r['grid']))}, num_workers {r['num_workers']})")
    print(f"{'batching':<10}{'prec':>5}{'GFLOP/q':>8}{'q/s':>7}{'spread':>7}{'in mem':>7}{'overhead':>9}{'wait':>6}"
          f"{'GFLOP/s':>8}{'/peak':>6}{'read/rows':>10}")  # fmt: skip
    for p in (r, r["bf16"]):
        for mode, m in (p or {}).get("modes", {}).items():
            print(f"{mode:<10}{p['precision']:>5}{m['gflop_per_question']:>8.2f}{m['loader_q_s']:>7.0f}"
                  f"{m['spread']:>7.1%}{m['in_memory_q_s']:>7.0f}{m['loader_overhead']:>9.1%}{m['data_wait']:>6.1%}{m['gflop_s']:>8.0f}"
                  f"{m['peak_ratio']:>6.2f}{m['bytes_read_over_rows'] or float('nan'):>10.2f}")  # fmt: skip
    print(f"GEMM peak (GFLOP/s): fp32 {r['peak_gflop_s']:.0f}"
          + (f", bf16 {r['bf16']['peak_gflop_s']:.0f}" if r["bf16"] else " (bf16: not native here, not measured)"))
    print(f"image-major / per-question: x{r['image_over_question']:.2f} (FLOP ceiling x{r['flop_ceiling']:.2f})"
          + (f"; bf16 / fp32 x{r['bf16_over_fp32']:.2f}" if r["bf16"] else "")
          + f"; evaluation {r['eval_q_s']:.0f} q/s")  # fmt: skip
    return r


def memory(cfg: Any, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    row_bytes = int(torch.tensor(args.grid).prod()) * 2
    need = 4 * args.store_images * row_bytes
    free = shutil.disk_usage(workdir).free
    if need > free:
        raise VQAError(f"the memory benchmark needs {need / 1e9:.1f} GB free in {workdir} for a {4 * args.store_images}"
                       f"-image store, {free / 1e9:.1f} GB free: lower --store-images")  # fmt: skip
    rows = bench_memory(cfg, workdir, args.store_images, tuple(args.grid), args.batch_size)
    s, s4 = rows
    print(f"peak RSS of a training epoch: {s['peak_rss_mb']:.0f} MB on a {s['store_gb']:.2f} GB store "
          f"({s['images']} images), {s4['peak_rss_mb']:.0f} MB on {s4['store_gb']:.2f} GB ({s4['images']}): "
          f"x{s4['peak_rss_mb'] / s['peak_rss_mb']:.2f}")  # fmt: skip
    return rows


@contextlib.contextmanager
def profiled(out: Path, enabled: bool) -> Iterator[None]:
    """With --profile: a torch.profiler table of the part (operators by self CPU time) written to ``out``."""
    if not enabled:
        yield
        return
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        yield
    atomic_write_text(out, prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    print(f"profile: {out}")


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    """Each target with the measured figure and whether it is met."""
    out = {}
    for r in results.get("extraction", []):
        if (r["backbone"], r["precision"]) == ("resnet152", "bf16"):
            name = "resnet152_bf16" + ("_compiled" if r["compiled"] else "")
            out[f"{name}_e2e_vs_forward"] = (r["ratio"], r["ratio"] >= TARGETS["extraction_vs_forward"])
            out[f"{name}_e2e_vs_peak"] = (r["roofline_ratio"], r["roofline_ratio"] >= TARGETS["roofline"])
    if "training" in results:
        tr = results["training"]
        out["training_loader_overhead"] = (tr["loader_overhead"], tr["loader_overhead"] <= TARGETS["loader_overhead"])
        read = tr["modes"]["image"]["bytes_read_over_rows"]
        if read is not None:  # None: counted in DataLoader workers (train.num_workers > 0)
            out["image_major_bytes_read_over_rows"] = (read, read <= TARGETS["bytes_read_over_rows"])
        out["image_over_question_q_s"] = (tr["image_over_question"],
                                          tr["image_over_question"] >= TARGETS["image_over_question"])  # fmt: skip
        out["training_fp32_vs_peak"] = (tr["peak_ratio"], tr["peak_ratio"] >= TARGETS["training_peak_ratio"])
        if tr.get("bf16"):
            out["training_bf16_over_fp32"] = (tr["bf16_over_fp32"], tr["bf16_over_fp32"] >= TARGETS["bf16_over_fp32"])
    if "memory" in results:
        g = results["memory"][1]["peak_rss_mb"] / results["memory"][0]["peak_rss_mb"]
        out["rss_4S_over_S"] = (g, g <= TARGETS["rss_growth"])
    return {k: {"value": v, "target_met": ok} for k, (v, ok) in out.items()}


def run(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every part asked for (``args.only``), the targets, bench.json and bench.png in ``<run.dir>/bench``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = cfg.run_dir / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    results: dict[str, Any] = {"device": name, "threads": torch.get_num_threads(), "torch": torch.__version__}
    parts = {"extraction": lambda: extraction(cfg, args, device), "training": lambda: training(cfg, args, out_dir),
             "memory": lambda: memory(cfg, args, out_dir)}  # fmt: skip
    for part, fn in parts.items():
        if args.only in ("all", part):
            with profiled(out_dir / f"profile_{part}.txt", args.profile and part != "memory"):
                results[part] = fn()
    results["targets"] = verdicts(results)
    for target, v in results["targets"].items():
        print(f"{'met ' if v['target_met'] else 'MISS'}  {target}: {v['value']:.3f}")
    atomic_write_json(out_dir / "bench.json", results)
    chart(results, out_dir / "bench.png")
    print(f"wrote {out_dir / 'bench.json'} and {out_dir / 'bench.png'}")
    return results


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
        modes = tr["modes"]
        axes[1].bar(["image-major", "in memory", "per-question", "eval"],
                    [modes["image"]["loader_q_s"], modes["image"]["in_memory_q_s"], modes["question"]["loader_q_s"],
                     tr["eval_q_s"]], color=["C0", "C1", "C4", "C2"])  # fmt: skip
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
