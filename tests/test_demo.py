"""`make demo` in miniature: every stage through `make`, in order, timed, and a failed stage stops the chain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

LABELS = ["data", "features", "train", "eval (val)", "blind baseline", "eval (test)", "inspect"]

pytestmark = pytest.mark.slow  # each test runs stages as processes (make demo in miniature)


def small_demo(root: Path) -> Path:
    """An experiment file like configs/default.yaml, shrunk: a 24-image world, 64-pixel features, one epoch."""
    path = root / "demo.yaml"
    path.write_text(f"""base: {REPO / "configs" / "base.yaml"}
data: {{annotations: {root}/ann.json, images: {root}/images, grounding: {root}/g.json}}
synth: {{train_images: 16, val_images: 4, test_images: 4}}
run: {{dir: {root}/run}}
features: {{image_size: 64, hypercolumn: []}}
model: {{embed_dim: 16, hidden_dim: 32, attention_dim: 32, cell_context: 0}}
train: {{epochs: 1, batch_size: 8}}
inspect: {{n: 2}}
""")
    return path


def demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "pipelines/demo.py", *args], cwd=REPO, capture_output=True, timeout=900)


def test_the_demo_runs_every_stage_and_closes_with_their_times(tmp_path: Path) -> None:
    p = demo("--config", str(small_demo(tmp_path)))
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    assert b"\r" not in p.stdout + p.stderr, "a piped demo log holds lines, not progress bars"
    table = out[out.index("demo stage times:") :].splitlines()[: len(LABELS) + 2]
    assert [ln.split("  ")[1].strip() for ln in table[1:-1]] == LABELS and table[-1].split()[0] == "total"
    run = tmp_path / "run"
    accuracy = json.loads((run / "eval" / "test" / "metrics.json").read_text())["accuracy"]
    blind = json.loads((tmp_path / "run_blind" / "eval" / "test" / "metrics.json").read_text())["accuracy"]
    assert f"test accuracy {accuracy:.3f} (the blind baseline: {blind:.3f}, chance 0.25)" in out
    assert f"the attention explorer: {run / 'inspect' / 'explorer.html'}" in out
    assert list(json.loads((run / "demo_times.json").read_text())) == LABELS
    assert (run / "eval" / "val" / "metrics.json").is_file() and (run / "eval" / "test" / "metrics.json").is_file()
    assert (tmp_path / "run_blind" / "eval" / "test" / "metrics.json").is_file()
    assert (run / "inspect" / "explorer.html").is_file()


def test_a_failing_stage_stops_the_demo_and_names_it(tmp_path: Path) -> None:
    p = demo("--config", str(small_demo(tmp_path)), f"model.word_vectors={tmp_path}/none.txt")  # train refuses
    err = p.stderr.decode()
    assert p.returncode != 0 and "Traceback" not in err
    assert "none.txt" in err and "the demo stopped at stage 'train'" in err
    assert "features" in err[err.index("demo stage times:") :] and not (tmp_path / "run" / "eval").exists()


def test_a_config_error_stops_the_demo_before_any_stage(tmp_path: Path) -> None:
    p = demo("--config", str(small_demo(tmp_path)), "train.no_such_key=1")
    assert p.returncode == 2 and "train.no_such_key" in p.stderr.decode() and b"Traceback" not in p.stderr
    assert not (tmp_path / "ann.json").exists()
