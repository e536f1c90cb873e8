"""kill -9 and SIGTERM on the real train / eval / inspect processes, then a rerun: it completes and its outputs
equal an uninterrupted run's. (The features stage has its own kill -9 test in test_features_cli.py.)

Where the kill lands is not left to the clock: the stage runs with ``VQA_HALT_AT=<event>`` (``files.reached``)
and waits at that named moment (mid-epoch, after validation, with a checkpoint written but not yet complete,
between the two renames of an output folder) until the test kills it. The moment is drawn from each stage's list
with ``VQA_CRASH_SEED`` (default 0, printed on failure), so a run is reproducible and other seeds cover the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from accelerate import Accelerator
from conftest import REPO, tiny_config
from PIL import Image
from safetensors.torch import load_file

from vqa.config import load_config
from vqa.data.synth import write_dataset
from vqa.data.tasks.telling import load_telling
from vqa.features.extract import extract_features

pytestmark = pytest.mark.slow
SMALL = ["features.image_size=64", "features.num_workers=0", "features.precision=fp32", "model.embed_dim=16",
         "model.hidden_dim=32", "model.attention_dim=32", "train.batch_size=8", "train.epochs=3",
         "eval.split=test", "inspect.split=test", "inspect.n=12"]  # fmt: skip
SEED = int(os.environ.get("VQA_CRASH_SEED", "0"))
TRAIN_KILLS = ["checkpoint-written:epoch_002", "train:epoch2:batch3", "train:validated:epoch2", "dir-written:best",
               "train:epoch3:batch1"]  # fmt: skip
OUTPUT_KILLS = {"evaluate": ["dir-swap:test", "eval:predictions-written", "dir-written:test"],
                "report": ["inspect:png3", "dir-swap:inspect", "dir-written:inspect"]}  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A dataset big enough for epochs of ~1 s, its features, and a trained reference run (``ref``)."""
    root = tmp_path_factory.mktemp("crash")
    data = tiny_config(root / "data", "synth.train_images=120", "synth.val_images=10", "synth.test_images=12")
    write_dataset(data)
    d = data.data
    args = [f"data.annotations={d.annotations}", f"data.images={d.images}", f"data.grounding={d.grounding}", *SMALL]
    cfg = load_config(None, [*args, f"run.dir={root / 'ref'}"])
    extract_features(cfg, load_telling(d.annotations, d.images).image_paths(), Accelerator(cpu=True))
    for stage in ("train", "evaluate", "report"):
        p = stage_run(stage, args, root / "ref")
        assert p.returncode == 0, p.stderr
    return root, args


def stage_run(stage: str, args: list[str], run: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"pipelines/{stage}.py", *args, f"run.dir={run}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@contextlib.contextmanager
def halted(stage: str, args: list[str], run: Path, event: str) -> Iterator[subprocess.Popen]:
    """The stage started with ``VQA_HALT_AT=event``, yielded once it waits there (stderr read up to that line);
    killed on the way out whatever the test did, so a failing test leaves no process waiting forever."""
    env = {**os.environ, "VQA_HALT_AT": event}
    proc = subprocess.Popen([sys.executable, f"pipelines/{stage}.py", *args, f"run.dir={run}"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        seen = []
        for line in proc.stderr:  # tqdm's bars end without a newline: the marker may follow one on the same line
            seen.append(line)
            if f"halted at {event}" in line:
                break
        else:
            proc.wait()
            tail = "".join(seen)[-2000:]
            raise AssertionError(f"seed {SEED}: {stage} never reached {event} (exit {proc.returncode}): {tail}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


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


def kill_then_resume(root: Path, args: list[str], name: str, event: str, ref: Path) -> None:
    """Train with kill -9 at ``event``, rerun the same command, and compare with the uninterrupted ``ref``."""
    run = copy_run(root, name, ("features",))
    with halted("train", args, run, event) as proc:
        proc.kill()
        proc.communicate()
    p = stage_run("train", args, run)
    assert p.returncode == 0, f"seed {SEED}: {p.stderr}"
    assert_same_training(run, ref)


def test_train_kill_9_at_a_named_moment_then_resume(base) -> None:
    root, args = base
    kill_then_resume(root, args, "train_kill", TRAIN_KILLS[SEED % len(TRAIN_KILLS)], root / "ref")


def test_train_sigterm_saves_a_checkpoint_and_exits_130(base) -> None:
    root, args = base
    run = copy_run(root, "train_term", ("features",))
    with halted("train", args, run, "train:epoch2:batch3") as proc:  # the handler runs, the step ends, it saves
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    line = next(x for x in err.splitlines() if x.startswith("stopped: SIGTERM"))
    assert "stopped in epoch 2 of 3 after batch 3 of" in line and "rerun the same command" in err, err
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
        if p.suffix in (".json", ".jsonl", ".html", ".js"):  # .js: the explorer's data (its title and run label)
            for name, mask in ((str(run), "<run>"), (f"{run.name} /", "<name> /"), (f"{run.name} (", "<name> (")):
                data = data.replace(name.encode(), mask.encode())
        return data

    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): read(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("stage", "out"), [("evaluate", "eval/test"), ("report", "inspect")])
def test_eval_and_inspect_kill_9_never_leave_a_mixed_output(base, stage: str, out: str) -> None:
    """Killed over an earlier output: the folder holds the old set or the new set, whole; killed between the two
    renames, the old set waits whole in ``.<name>.old`` and the next run puts it back before writing."""
    root, args = base
    run = copy_run(root, stage, ("features", "tokenizer", "checkpoints", "eval"))
    ref = outputs(root / "ref" / out, root / "ref")
    # an earlier, different output in place: the folder must never mix it with the new one
    old = run / out
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir(parents=True)
    (old / "stale.txt").write_text("from an earlier run")
    event = OUTPUT_KILLS[stage][SEED % len(OUTPUT_KILLS[stage])]
    with halted(stage, args, run, event) as proc:
        proc.kill()
        proc.communicate()
    kept = old if old.exists() else old.with_name(f".{old.name}.old")
    assert event.startswith("dir-swap") or kept == old, f"seed {SEED}, {event}: the folder is gone"
    assert outputs(kept, run) == {"stale.txt": b"from an earlier run"}, f"seed {SEED}, {event}: {sorted(old.iterdir())}"
    p = stage_run(stage, args, run)
    assert p.returncode == 0, p.stderr
    assert outputs(old, run) == ref, f"seed {SEED}, killed at {event}"
    assert not [p for p in old.parent.iterdir() if p.name.startswith(f".{old.name}.")], "temp folders removed"
    if stage == "report":
        with Image.open(old / next(n for n in ref if n.endswith(".png"))) as im:
            assert im.size[0] > 100


@pytest.fixture(scope="module")
def decoder_ref(base) -> tuple[Path, list[str]]:
    """``base``'s data and features, and an uninterrupted ``model.head=decoder`` reference run (``ref_decoder``)."""
    root, args = base
    args = [*args, "model.head=decoder"]
    shutil.copytree(root / "ref" / "features", root / "ref_decoder" / "features")
    p = stage_run("train", args, root / "ref_decoder")
    assert p.returncode == 0, p.stderr
    return root, args


def test_the_decoder_resumes_after_kill_9_as_if_never_stopped(decoder_ref) -> None:
    root, args = decoder_ref
    event = TRAIN_KILLS[(SEED + 1) % len(TRAIN_KILLS)]  # another moment than the scorer's test
    kill_then_resume(root, args, "decoder_kill", event, root / "ref_decoder")
