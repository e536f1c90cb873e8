"""The features stage as users run it: bad images, kill -9 and resume, 2 processes = 1 process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from accelerate import Accelerator
from conftest import REPO
from PIL import Image

from vqa.common.errors import VQAError
from vqa.config import load_config
from vqa.data.tasks.telling import load_telling
from vqa.features.extract import extract_features
from vqa.features.store import FeatureReader

SETTINGS = ["features.image_size=64", "features.shard_size=4", "features.batch_size=2", "features.precision=fp32"]


def copy_dataset(cfg, dest: Path) -> list[str]:
    """A private copy of the tiny dataset (so its images can be damaged); returns the data overrides."""
    shutil.copytree(Path(cfg.data.images), dest / "images")
    shutil.copy(cfg.data.annotations, dest / "ann.json")
    return [f"data.annotations={dest / 'ann.json'}", f"data.images={dest / 'images'}", "data.grounding=null"]


def features(*args: str, launcher: tuple[str, ...] = (), threads: int | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *launcher, "pipelines/features.py", *args]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def shards(run_dir: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in sorted((run_dir / "features").glob("shard_*.npy"))}


def damage(images: Path) -> None:
    """Every kind of bad image a real folder holds, plus odd-but-usable ones."""
    (images / "v7w_1.jpg").unlink()  # missing
    (images / "v7w_2.jpg").write_bytes(b"")  # 0 bytes
    data = (images / "v7w_3.jpg").read_bytes()
    (images / "v7w_3.jpg").write_bytes(data[: len(data) // 3])  # truncated: the header is fine
    (images / "v7w_4.jpg").write_text("<html>404 Not Found</html>")  # not an image
    Image.new("RGB", (1500, 1500), (9, 9, 9)).save(images / "v7w_8.jpg")  # 2.25 Mpx: over the limit below
    with Image.open(images / "v7w_5.jpg") as im:
        im.convert("CMYK").save(images / "v7w_5.jpg", "JPEG")
    with Image.open(images / "v7w_6.jpg") as im:
        im.convert("L").save(images / "v7w_6.jpg", "JPEG")
    with Image.open(images / "v7w_7.jpg") as im:
        im.convert("RGBA").save(images / "v7w_7.jpg", "PNG")  # PNG content under a .jpg name
    with Image.open(images / "v7w_9.jpg") as im:
        im.resize((1600, 1200)).save(images / "v7w_9.jpg", "JPEG")  # large but allowed: decoded at reduced scale
    with Image.open(images / "v7w_10.jpg") as im:
        im.convert("P").save(images / "v7w_10.jpg", "PNG")


BAD = {1: "missing file", 2: "empty file (0 bytes)", 3: "cannot decode", 4: "not an image", 8: "too large: 1500x1500"}


@pytest.mark.slow
def test_bad_images_stop_with_the_full_list_then_skip(tiny_dataset, tmp_path: Path) -> None:
    data = copy_dataset(tiny_dataset, tmp_path)
    damage(tmp_path / "images")
    common = [*data, f"run.dir={tmp_path / 'run'}", *SETTINGS, "features.max_pixels=2000000"]
    p = features(*common)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "5 unusable image(s)" in p.stderr
    for image_id, reason in BAD.items():
        line = next(ln for ln in p.stderr.splitlines() if f"image_id {image_id} (" in ln)
        assert f"v7w_{image_id}.jpg" in line and reason in line, line
    assert not list((tmp_path / "run" / "features").glob("shard_*")), "the check runs before any long work"

    p = features(*common, "features.on_error=skip")
    assert p.returncode == 0, p.stderr
    assert "5 image(s) skipped as unusable" in p.stdout
    manifest = json.loads((tmp_path / "run" / "features" / "manifest.json").read_text())
    assert sorted(map(int, manifest["missing"])) == sorted(BAD)
    assert manifest["counts"]["extracted"] == 38 - 5
    reader = FeatureReader(tmp_path / "run" / "features")
    for usable in (5, 6, 7, 9, 10):  # CMYK, grayscale, RGBA, large, palette: converted and extracted
        assert reader[usable].shape == (1344, 2, 2) and reader[usable].float().abs().sum() > 0
    with pytest.raises(VQAError, match=r"image_id 2 has no features .*empty file"):
        reader[2]


def test_decode_failure_keeps_finished_shards_and_redoes_only_its_own(tiny_dataset, tmp_path: Path) -> None:
    data = copy_dataset(tiny_dataset, tmp_path)
    target = tmp_path / "images" / "v7w_13.jpg"  # in shard 3 (ids 13..16)
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 3])
    cfg = load_config(None, [*data, f"run.dir={tmp_path / 'run'}", *SETTINGS, "features.num_workers=0"])
    dataset = load_telling(cfg.data.annotations, cfg.data.images)
    with pytest.raises(VQAError, match=r"1 image\(s\) could not be decoded.*\n.*image_id 13 .*cannot decode"):
        extract_features(cfg, dataset.image_paths(), Accelerator(cpu=True))
    assert len(list((tmp_path / "run" / "features").glob("shard_*.json"))) == 10
    target.write_bytes(good)
    out = extract_features(cfg, dataset.image_paths(), Accelerator(cpu=True))
    assert out["extracted_now"] == 4 and not out["missing"]


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(tiny_dataset, tmp_path: Path) -> None:
    data = copy_dataset(tiny_dataset, tmp_path)
    slow = [*data, "features.image_size=160", "features.shard_size=4", "features.batch_size=2",
            "features.precision=fp32", "features.num_workers=1"]  # fmt: skip
    root = tmp_path / "killed" / "features"
    cmd = [sys.executable, "pipelines/features.py", *slow, f"run.dir={tmp_path / 'killed'}"]
    env = {**os.environ, "VQA_HALT_AT": "features:shard1"}  # vqa.common.files.reached: waits there, shards 0-1 done
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    assert any("halted at features:shard1" in line for line in proc.stderr), "the run never finished shard 1"
    os.killpg(proc.pid, signal.SIGKILL)  # the stage and its decoding worker, mid-run
    proc.wait()
    assert not (root / "manifest.json").exists(), "the run was killed before it finished"
    kept = {p.name: p.stat().st_mtime_ns for p in root.glob("shard_*.npy")}
    p = features(*slow, f"run.dir={tmp_path / 'killed'}")
    assert p.returncode == 0, p.stderr
    assert "resuming:" in p.stdout
    assert all((root / name).stat().st_mtime_ns == t for name, t in kept.items()), "finished shards are reused"
    ref = features(*slow, f"run.dir={tmp_path / 'clean'}")
    assert ref.returncode == 0, ref.stderr
    a, b = shards(tmp_path / "killed"), shards(tmp_path / "clean")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), "bit-identical to a clean run"


@pytest.mark.slow
def test_two_processes_equal_one(tiny_dataset, tmp_path: Path) -> None:
    data = [f"data.annotations={tiny_dataset.data.annotations}", f"data.images={tiny_dataset.data.images}"]
    args = [*data, *SETTINGS, "features.num_workers=1"]
    two = features(*args, f"run.dir={tmp_path / 'two'}",
                   launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert "2 process(es)" in two.stdout
    manifest = json.loads((tmp_path / "two" / "features" / "manifest.json").read_text())
    assert {s["world_size"] for s in manifest["shards"]} == {2}
    assert {s["rank"] for s in manifest["shards"]} == {0, 1}, "both ranks extracted shards"
    # torchrun gives each rank one thread; with the same thread count the stores are bit-identical (the shard
    # layout and every batch are independent of the number of processes). With other thread counts oneDNN
    # may round the last fp16 bit differently.
    one = features(*args, f"run.dir={tmp_path / 'one'}", threads=1)
    assert one.returncode == 0, one.stderr
    a, b = shards(tmp_path / "one"), shards(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) == 10
    assert all(np.array_equal(a[k], b[k]) for k in a)
