"""Progress in a log: `make train > log` and CI logs hold lines, never a bar's carriage returns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from vqa.common import progress
from vqa.common.progress import Lines, progress_bar, track


def piped(*args: str) -> bytes:
    """stdout + stderr of a pipeline as bytes: text mode would turn a carriage return into a newline."""
    p = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout + p.stderr


@pytest.mark.slow
def test_a_piped_training_log_is_one_line_per_epoch(trained_run, tmp_path: Path) -> None:
    store = Path(next(o for o in trained_run if o.startswith("run.dir=")).partition("=")[2]) / "features"
    args = [*(o for o in trained_run if not o.startswith(("run.dir=", "train.epochs="))),
            f"run.dir={tmp_path / 'run'}", f"features.dir={store}", "train.epochs=3", "train.mixed_precision=auto"]
    log = piped("pipelines/train.py", *args)
    assert b"\r" not in log
    lines = log.decode().splitlines()
    assert any(ln.startswith("training in ") and "(auto: " in ln for ln in lines), "the log says which precision"
    assert [ln.split(":")[0] for ln in lines if ln.startswith("epoch ")] == ["epoch 1", "epoch 2", "epoch 3"]
    assert not any("batch/s" in ln or "it/s" in ln for ln in lines), "no batch progress between the epoch lines"


@pytest.mark.slow
def test_a_piped_data_stage_reports_progress_in_lines(tmp_path: Path) -> None:
    log = piped("pipelines/data.py", f"data.annotations={tmp_path}/ann.json", f"data.images={tmp_path}/images",
                f"data.grounding={tmp_path}/g.json", f"run.dir={tmp_path}/run", "synth.train_images=8",
                "synth.val_images=2", "synth.test_images=2")  # fmt: skip
    assert b"\r" not in log
    assert "render images: 12/12 img (100 %)" in log.decode()


def test_lines_come_every_tenth_of_the_work_and_at_the_end(monkeypatch, capsys) -> None:
    monkeypatch.setattr(progress, "GAP", 0.0)
    bar = Lines(1000, "features", "img")
    for _ in range(1000):
        bar.update(1)
    bar.set_postfix(loss="0.5")
    bar.close()
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split(" (")[0] for ln in lines] == [f"features: {n}/1000 img" for n in range(100, 1001, 100)]
    assert lines[-1].startswith("features: 1000/1000 img (100 %)") and lines[-1].endswith("loss=0.5")


def test_lines_wait_between_lines_and_resume_counts_from_where_it_was(capsys) -> None:
    bar = Lines(100, "epoch 2/9", "batch", initial=40)  # GAP: no line for quick work but the last
    for _ in range(60):
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("epoch 2/9: 100/100 batch (100 %)")


@pytest.mark.parametrize("in_log", [True, False])
def test_off_a_terminal_a_bar_writes_lines_or_nothing(monkeypatch, capsys, in_log: bool) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    bar = progress_bar(3, "epoch 1/2", "batch", in_log=in_log)
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert capsys.readouterr().err.count("epoch 1/2: 3/3 batch") == (1 if in_log else 0)
    assert list(track([1, 2], "x", disable=True)) == [1, 2] and capsys.readouterr().err == ""
