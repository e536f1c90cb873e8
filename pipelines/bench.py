"""`make bench-features`: feature extraction speed, end to end vs the pure forward pass, on this machine.

    python pipelines/bench.py --config configs/default.yaml [--images 256] [--heavy-images 16] [--repeats 3]

Needs the config's dataset (`make data`). Backbones use random weights: speed does not depend on them.
"""

from __future__ import annotations

import vqa.entry  # noqa: F401  (first: takes pipelines/ off sys.path, see vqa/entry.py)

# isort: split

import argparse
import sys
from collections.abc import Sequence

import torch

from vqa import cli
from vqa.bench import bench_extraction
from vqa.data import load_telling
from vqa.io import atomic_write_json


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=384, help="images for efficientnet_lite0@224")
    parser.add_argument("--heavy-images", type=int, default=32, help="images for resnet152@448")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")


def main(argv: Sequence[str] | None = None) -> None:
    cfg, args = cli.parse(__doc__.splitlines()[0], argv, _flags)
    dataset = load_telling(cfg.data.annotations, cfg.data.images)
    ids = dataset.image_ids()
    paths = {i: dataset.image_path(i) for i in ids}
    precisions = ["fp32", "bf16"] if torch.cuda.is_available() or torch.cpu._is_avx512_bf16_supported() else ["fp32"]
    cases = [("efficientnet_lite0", 224, args.images, cfg.features.batch_size),
             ("resnet152", 448, args.heavy_images, 8)]  # fmt: skip
    rows = []
    print(f"{'backbone':<22}{'precision':>10}{'batch':>7}{'forward img/s':>15}{'end-to-end img/s':>18}{'ratio':>8}")
    for name, size, n, bs in cases:
        cfg.features.batch_size = bs
        for precision in precisions:
            r = bench_extraction(cfg, ids[:n], paths, name, size, precision, args.repeats)
            rows.append(r)
            print(f"{name + '@' + str(size):<22}{precision:>10}{bs:>7}{r['forward_img_s']:>15.1f}"
                  f"{r['end_to_end_img_s']:>18.1f}{r['ratio']:>8.2f}", flush=True)  # fmt: skip
    out = cfg.run_dir / "bench" / "bench_features.json"
    atomic_write_json(out, {"extraction": rows, "threads": torch.get_num_threads(),
                            "device": "cuda" if torch.cuda.is_available() else "cpu"})  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
