"""`make bench`: extraction, training and memory figures of this machine, as ratios measured in one run.

    python pipelines/bench.py --config configs/default.yaml [--only extraction|training|memory] [--repeats 3]

Needs the config's dataset for the extraction part (`make data`). Backbones use random weights and the training
parts a synthetic Visual7W-shape store (2048 x 14 x 14 fp16): speed does not depend on the numbers. Writes
<run.dir>/bench/bench.json and bench.png; --profile also writes torch.profiler tables next to them.
"""

from __future__ import annotations

import vqa.entry  # noqa: F401  (first: takes pipelines/ off sys.path, see vqa/entry.py)

# isort: split

import argparse
import contextlib
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from vqa import bench, cli
from vqa.data import dataset_from_config
from vqa.errors import VQAError
from vqa.io import atomic_write_json, atomic_write_text

TARGETS = {"extraction_vs_forward": 0.9, "roofline": 0.8, "loader_overhead": 0.10, "rss_growth": 1.1}


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", choices=["all", "extraction", "training", "memory"], default="all")
    parser.add_argument("--images", type=int, default=256, help="images for efficientnet_lite0@224")
    parser.add_argument("--heavy-images", type=int, default=32, help="images for resnet152@448")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (the fastest counts)")
    parser.add_argument("--questions", type=int, default=512, help="questions per timed training/eval pass")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch for the training/memory parts")
    parser.add_argument("--store-images", type=int, default=512, help="S: images in the smaller synthetic store")
    parser.add_argument("--grid", type=int, nargs=3, default=bench.VISUAL7W_GRID, metavar=("C", "H", "W"))
    parser.add_argument("--no-compile", action="store_true", help="skip the features.compile=true extraction row")
    parser.add_argument("--profile", action="store_true", help="write torch.profiler tables of extraction/training")


def extraction(cfg: Any, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    dataset = dataset_from_config(cfg)
    ids = dataset.image_ids()
    paths = {i: dataset.image_path(i) for i in ids}
    bf16 = device.type == "cuda" or torch.cpu._is_avx512_bf16_supported()
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    peaks = {p: bench.matmul_peak(p, device) for p in precisions}
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
        r = bench.bench_extraction(cfg, ids[:n], paths, name, size, precision, bs, args.repeats,
                                   peaks[precision]["peak"], compiled)  # fmt: skip
        rows.append(r)
        label = f"{name}@{size}" + (" compiled" if compiled else "")
        print(f"{label:<22}{precision:>6}{bs:>6}{r['gflop_per_image']:>10.2f}{r['forward_img_s']:>9.1f}"
              f"{r['end_to_end_img_s']:>9.1f}{r['ratio']:>8.2f}{r['roofline_ratio']:>9.2f}", flush=True)  # fmt: skip
    return rows


def training(cfg: Any, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        reader = bench.synthetic_store(Path(tmp), args.questions, tuple(args.grid))
        r = bench.bench_training(cfg, reader, args.questions, args.batch_size, args.repeats)
        reader.close()
    print(f"training ({r['questions']} questions, batch {r['batch_size']}, grid {'x'.join(map(str, r['grid']))}, "
          f"num_workers {r['num_workers']}): real loader {r['loader_q_s']:.0f} q/s, same batches in memory "
          f"{r['in_memory_q_s']:.0f} q/s -> loader overhead {r['loader_overhead']:.1%} (waiting for batches: "
          f"{r['data_wait']:.1%} of the time); "
          f"evaluation {r['eval_q_s']:.0f} q/s")  # fmt: skip
    return r


def memory(cfg: Any, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    row_bytes = int(torch.tensor(args.grid).prod()) * 2
    need = 4 * args.store_images * row_bytes
    free = shutil.disk_usage(workdir).free
    if need > free:
        raise VQAError(f"the memory benchmark needs {need / 1e9:.1f} GB free in {workdir} for a {4 * args.store_images}"
                       f"-image store, {free / 1e9:.1f} GB free: lower --store-images")  # fmt: skip
    rows = bench.bench_memory(cfg, workdir, args.store_images, tuple(args.grid), args.batch_size)
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
        o = results["training"]["loader_overhead"]
        out["training_loader_overhead"] = (o, o <= TARGETS["loader_overhead"])
    if "memory" in results:
        g = results["memory"][1]["peak_rss_mb"] / results["memory"][0]["peak_rss_mb"]
        out["rss_4S_over_S"] = (g, g <= TARGETS["rss_growth"])
    return {k: {"value": v, "target_met": ok} for k, (v, ok) in out.items()}


def main(argv: Sequence[str] | None = None) -> None:
    cfg, args = cli.parse(__doc__.splitlines()[0], argv, _flags)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = cfg.run_dir / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    results: dict[str, Any] = {"device": name, "threads": torch.get_num_threads(), "torch": torch.__version__}
    parts = {"extraction": lambda: extraction(cfg, args, device), "training": lambda: training(cfg, args, out_dir),
             "memory": lambda: memory(cfg, args, out_dir)}  # fmt: skip
    for part, run in parts.items():
        if args.only in ("all", part):
            with profiled(out_dir / f"profile_{part}.txt", args.profile and part != "memory"):
                results[part] = run()
    results["targets"] = verdicts(results)
    for name, v in results["targets"].items():
        print(f"{'met ' if v['target_met'] else 'MISS'}  {name}: {v['value']:.3f}")
    atomic_write_json(out_dir / "bench.json", results)
    bench.chart(results, out_dir / "bench.png")
    print(f"wrote {out_dir / 'bench.json'} and {out_dir / 'bench.png'}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
