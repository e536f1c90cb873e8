"""`make bench` code paths on a tiny size: every part runs and reports what it should (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vqa import cli
from vqa.bench import inputs, measure
from vqa.commands import bench as bench_command
from vqa.features.backbones import build_backbone


def test_flop_count_matches_the_published_figure() -> None:
    """ResNet-50 at 224: 4.1 GMAC (torchvision's model card), i.e. ~8.2 GFLOP; the roofline ratio rests on it."""
    backbone = build_backbone("resnet50", 224, pretrained=False)
    assert 7.6 < measure.backbone_gflop(backbone, 224) < 8.4  # the grid extractor drops only pool + fc


def test_matmul_peak_counts_two_flops_per_multiply_add(monkeypatch) -> None:
    """With the timings fixed (matmul 1 s, 1x1 conv 2 s), the rates are the GEMMs' FLOPs over those seconds."""
    monkeypatch.setattr(measure, "fastest", lambda fns, repeats: [1.0, 2.0])
    peak = measure.matmul_peak("fp32", torch.device("cpu"), n=64, repeats=1)
    assert peak["matmul"] == pytest.approx(2 * 64**3 / 1e9)
    assert peak["conv1x1"] == pytest.approx(2 * 16 * 28 * 28 * 1024 * 1024 / 2.0 / 1e9)  # [16, 1024, 28, 28] x 1024
    assert peak["peak"] == peak["conv1x1"]


def test_synthetic_store_reads_like_a_real_one(tmp_path: Path) -> None:
    reader = inputs.synthetic_store(tmp_path, 10, grid=(8, 2, 2), shard_size=4)
    assert len(reader) == 10 and reader.grid == (8, 2, 2) and sorted(reader.index) == list(range(1, 11))
    assert reader[10].dtype == torch.float16 and reader[10].shape == (8, 2, 2)
    assert reader[10].abs().sum() > 0
    table = inputs.synthetic_qa(sorted(reader.index), vocab=50)
    assert len(table) == 10 and all(len(c) == 4 for c in table["candidate_ids"])
    assert all(2 <= t < 50 for q in table["question_ids"] for t in q), "no PAD/UNK ids in synthetic questions"


def test_reader_keeps_resident_memory_flat(tmp_path: Path) -> None:
    """Reading every row of a store leaves the process's RSS where it was (page cache, not private memory)."""
    rows, grid = 256, (256, 14, 14)
    reader = inputs.synthetic_store(tmp_path, rows, grid=grid, shard_size=64)
    store_mb = rows * int(np.prod(grid)) * 2 / 2**20  # fp16: 24.5 MB read in all
    before = _rss_mb()
    total = sum(float(reader[i][0, 0, 0]) for i in reader.index)
    assert np.isfinite(total)
    assert _rss_mb() - before < store_mb / 2, "rows are read into private buffers that are freed, not kept"


def _rss_mb() -> float:
    """Current resident memory (Linux, the platform the pipeline targets: glibc tuning, /proc)."""
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
def test_bench_cli_runs_every_part_on_a_tiny_size(tiny_dataset, tmp_path: Path, capsys) -> None:
    d = tiny_dataset.data
    argv = [f"data.annotations={d.annotations}", f"data.images={d.images}", f"run.dir={tmp_path / 'run'}",
            "model.embed_dim=8", "model.hidden_dim=16", "model.attention_dim=16", "features.batch_size=2",
            "--images", "2", "--heavy-images", "1", "--repeats", "2", "--questions", "8", "--batch-size", "4",
            "--store-images", "8", "--grid", "16", "2", "2", "--profile", "--no-compile",
            "--questions-per-image", "2.4"]  # fmt: skip
    assert cli.run(bench_command.main, argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "matmul peak" in out and "image-major / per-question" in out and "peak RSS" in out
    results = json.loads((tmp_path / "run" / "bench" / "bench.json").read_text())
    ext = {(r["backbone"], r["precision"]) for r in results["extraction"]}
    assert {("efficientnet_lite0", "fp32"), ("resnet152", "fp32")} <= ext
    for r in results["extraction"]:
        assert r["ratio"] > 0 and r["roofline_ratio"] > 0 and r["gflop_per_image"] > 0
    tr = results["training"]
    assert tr["questions"] == 8 and tr["grid"] == [16, 2, 2] and set(tr["modes"]) == {"image", "question"}
    assert tr["gflop_per_question"] > 0 and tr["peak_ratio"] > 0
    image, question = tr["modes"]["image"], tr["modes"]["question"]
    # FLOPs are counted on what each mode runs: image-major batches project a grid once for all its questions
    assert image["gflop_per_question"] < question["gflop_per_question"]
    assert tr["flop_ceiling"] == pytest.approx(question["gflop_per_question"] / image["gflop_per_question"])
    assert image["peak_ratio"] == pytest.approx(image["loader_q_s"] * image["gflop_per_question"] / tr["peak_gflop_s"])
    assert tr["bf16"] is None or tr["bf16"]["precision"] == "bf16"  # bf16 only where the hardware has it
    assert all(isinstance(m["spread"], float) for m in tr["modes"].values()), "each mode reports its spread"
    assert "spread" in out, "the repeats' spread is shown"
    # 8 questions on 3 images: image-major order reads each image's row once per epoch; per-question order reads
    # an image again whenever the question before was about another one
    assert tr["modes"]["image"]["bytes_read_over_rows"] == pytest.approx(1.0)
    assert tr["modes"]["question"]["bytes_read_over_rows"] > 1.0
    assert [m["images"] for m in results["memory"]] == [8, 32], "S and 4 S"
    assert all(m["peak_rss_mb"] > 50 for m in results["memory"])
    assert {"training_loader_overhead", "image_major_bytes_read_over_rows", "image_over_question_q_s",
            "training_fp32_vs_peak", "rss_4S_over_S"} <= set(results["targets"])  # fmt: skip
    assert (tmp_path / "run" / "bench" / "bench.png").stat().st_size > 5000
    assert "self cpu" in (tmp_path / "run" / "bench" / "profile_training.txt").read_text().lower()
    assert not [p for p in (tmp_path / "run" / "bench").iterdir() if p.is_dir()], "synthetic stores are removed"


@pytest.mark.parametrize("lengths", [[4, 4, 3], [3, 1, 1]], ids=["padded (oneDNN)", "packed"])
def test_flops_of_an_lstm_are_counted_on_either_path(lengths: list[int]) -> None:
    """A padded one-way LSTM runs as oneDNN's fused layer, which torch's counter has no formula for: counted
    here as 2 x tokens x 4H x (E + H) forward and twice that backward, like the packed path's matmuls."""
    from vqa.model import TextEncoder

    enc = TextEncoder("lstm", 6, 5, bidirectional=False)
    emb = torch.randn(3, 4, 6, requires_grad=True)
    flops = measure.count_flops(lambda: enc(emb, torch.tensor(lengths)).sum().backward())
    tokens = 12 if lengths == [4, 4, 3] else sum(lengths)  # the padded path also runs the padding
    assert flops == pytest.approx(3 * 2 * tokens * 20 * (6 + 5), rel=0.35)



def test_timed_runs_interleave_and_the_spread_is_slowest_over_fastest() -> None:
    calls: list[str] = []
    times = measure.timed([lambda: calls.append("a"), lambda: calls.append("b")], 3)
    assert calls == ["a", "b"] * 4, "one warm-up each, then the repeats interleaved"
    assert [len(t) for t in times] == [3, 3]
    assert measure.spread([1.0, 1.05, 1.2]) == pytest.approx(0.2)
