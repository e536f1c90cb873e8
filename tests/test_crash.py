"""kill -9 and SIGTERM on the real train / eval / inspect processes, then a rerun: it completes and its outputs
equal an uninterrupted run's. (The features stage has its own kill -9 test in test_features_cli.py.)

The kill moments are random (a seeded draw, printed on failure) so that, across runs, they land in every phase:
mid-epoch, during validation, while a checkpoint or an output folder is being written.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from accelerate import Accelerator
from conftest import REPO, tiny_config
from PIL import Image
from safetensors.torch import load_file

from vqa.config import load_config
from vqa.data import load_telling
from vqa.extract import extract_features
from vqa.synth import write_dataset

pytestmark = pytest.mark.slow
SMALL = ["features.image_size=64", "features.num_workers=0", "features.precision=fp32", "model.embed_dim=16",
         "model.hidden_dim=32", "model.attention_dim=32", "train.batch_size=8", "train.epochs=3",
         "eval.split=test", "inspect.split=test", "inspect.n=12"]  # fmt: skip
SEED = int(os.environ.get("VQA_CRASH_SEED", time.time_ns() % 10_000))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A dataset big enough for epochs of ~1 s, its features, and a trained reference run (``ref``)."""
    root = tmp_path_factory.mktemp("crash")
    data = tiny_config(root / "data", "synth.train_images=120", "synth.val_images=10", "synth.test_images=12")
    write_dataset(data)
    d = data.data
    args = [f"data.annotations={d.annotations}", f"data.images={d.images}", f"data.grounding={d.grounding}", *SMALL]
    cfg = load_config(None, [*args, f"run.dir={root / 'ref'}"])
    extract_features(cfg, load_telling(d.annotations, d.images), Accelerator(cpu=True))
    for stage in ("train", "evaluate", "inspect"):
        p = stage_run(stage, args, root / "ref")
        assert p.returncode == 0, p.stderr
    return root, args


def stage_run(stage: str, args: list[str], run: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"pipelines/{stage}.py", *args, f"run.dir={run}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def start(stage: str, args: list[str], run: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, f"pipelines/{stage}.py", *args, f"run.dir={run}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for(path_glob: tuple[Path, str], proc: subprocess.Popen, timeout: float = 300) -> None:
    folder, pattern = path_glob
    deadline = time.time() + timeout
    while not list(folder.glob(pattern)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)


def copy_run(base_root: Path, name: str, keep: tuple[str, ...]) -> Path:
    """A fresh run folder holding only ``keep`` from the reference run (e.g. its features and tokenizer)."""
    run = base_root / f"{name}_{SEED}_{time.time_ns()}"
    for item in keep:
        shutil.copytree(base_root / "ref" / item, run / item)
    return run


def weights(run: Path, which: str) -> dict:
    return load_file(str(run / "checkpoints" / which / "model.safetensors"))


def assert_same_training(run: Path, ref: Path) -> None:
    for which in ("epoch_003", "best"):
        a, b = weights(ref, which), weights(run, which)
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), f"{which} differs (seed {SEED})"
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (ref / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3], "no epoch lost from the log, none repeated"
    assert [r["val_accuracy"] for r in rows] == [r["val_accuracy"] for r in ref_rows]
    assert not list((run / "checkpoints").glob(".tmp_*")), "a killed run's temp folders are cleaned up"


def test_train_kill_9_at_a_random_moment_then_resume(base) -> None:
    root, args = base
    run = copy_run(root, "train_kill", ("features",))
    proc = start("train", args, run)
    wait_for((run / "checkpoints", "epoch_001"), proc)
    time.sleep(random.Random(SEED).uniform(0.0, 1.5))  # somewhere in epochs 2-3, validation or a save
    proc.kill()
    proc.communicate()
    p = stage_run("train", args, run)
    assert p.returncode == 0, f"seed {SEED}: {p.stderr}"
    assert_same_training(run, root / "ref")


def test_train_sigterm_saves_a_checkpoint_and_exits_130(base) -> None:
    root, args = base
    run = copy_run(root, "train_term", ("features",))
    proc = start("train", args, run)
    wait_for((run / "checkpoints", "epoch_001"), proc)
    time.sleep(random.Random(SEED).uniform(0.0, 0.3))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"seed {SEED}: {err}"
    assert "Traceback" not in err
    line = next(x for x in err.splitlines() if x.startswith("stopped: SIGTERM"))
    assert "checkpoint" in line and "rerun the same command" in err, err
    saved = Path(line.rsplit("checkpoint ", 1)[1].split(";")[0])
    assert saved.is_dir() and (saved / "trainer_state.json").is_file(), line
    p = stage_run("train", args, run)
    assert p.returncode == 0, p.stderr
    assert f"resuming from {saved}" in p.stdout
    assert_same_training(run, root / "ref")


def outputs(folder: Path, run: Path) -> dict[str, bytes]:
    """Every file of an output folder; in text files the run's own path and name (recorded in metrics and the
    index) are masked."""

    def read(p: Path) -> bytes:
        data = p.read_bytes()
        if p.suffix in (".json", ".jsonl", ".html"):
            data = data.replace(str(run).encode(), b"<run>").replace(f"{run.name} /".encode(), b"<name> /")
        return data

    return {p.name: read(p) for p in sorted(folder.iterdir())} if folder.is_dir() else {}


@pytest.mark.parametrize(("stage", "out"), [("evaluate", "eval/test"), ("inspect", "inspect")])
def test_eval_and_inspect_kill_9_never_leave_a_mixed_output(base, stage: str, out: str) -> None:
    """Killed at a random moment over an earlier output: the folder holds the old set or the new set, whole."""
    root, args = base
    run = copy_run(root, stage, ("features", "tokenizer", "checkpoints", "eval"))
    ref = outputs(root / "ref" / out, root / "ref")
    # an earlier, different output in place: the folder must never mix it with the new one
    old = run / out
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir(parents=True)
    (old / "stale.txt").write_text("from an earlier run")
    began = time.perf_counter()
    proc = start(stage, args, run)
    wait_for((run / out.split("/")[0], "*"), proc, timeout=5)  # started
    time.sleep(random.Random(SEED).uniform(0.0, 6.0))  # a clean run takes ~5-9 s here, mostly startup
    proc.kill()
    proc.communicate()
    after = outputs(old, run)
    finished = (stage == "evaluate" and "metrics.json" in after) or (stage == "inspect" and "index.html" in after)
    if finished:
        assert after == ref, f"seed {SEED}: a complete output equals the uninterrupted run's"
    else:
        assert after == {"stale.txt": b"from an earlier run"}, f"seed {SEED}: {sorted(after)}"
    p = stage_run(stage, args, run)
    assert p.returncode == 0, p.stderr
    assert outputs(old, run) == ref, f"seed {SEED}, killed after {time.perf_counter() - began:.1f} s"
    assert not [p for p in old.parent.iterdir() if p.name.startswith(f".{old.name}.")], "temp folders removed"
    if stage == "inspect":
        with Image.open(old / next(n for n in ref if n.endswith(".png"))) as im:
            assert im.size[0] > 100
