"""Entry points as a user runs them: real subprocesses, clean errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def small(tmp_path: Path) -> list[str]:
    return [
        f"data.annotations={tmp_path}/ann.json", f"data.images={tmp_path}/images",
        f"data.grounding={tmp_path}/g.json", f"run.dir={tmp_path}/run",
        "synth.train_images=8", "synth.val_images=2", "synth.test_images=2",
    ]  # fmt: skip


@pytest.mark.slow
def test_data_stage_writes_a_loadable_dataset_and_config(tmp_path: Path) -> None:
    p = run("pipelines/data.py", "--config", "configs/default.yaml", *small(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "12 images" in p.stdout and "blind answer-frequency baseline on test" in p.stdout
    assert len(json.loads((tmp_path / "ann.json").read_text())["images"]) == 12
    assert (tmp_path / "run" / "config.yaml").is_file()
    again = run("pipelines/data.py", *small(tmp_path))
    assert again.returncode == 0 and "up to date" in again.stdout


@pytest.mark.slow
def test_config_error_is_one_clean_message(tmp_path: Path) -> None:
    p = run("pipelines/data.py", "--config", "configs/default.yaml", "train.lrr=1", "synth.val_images=-1")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert "unknown key 'train.lrr'" in p.stderr and "synth.val_images must be >= 1, got -1" in p.stderr


@pytest.mark.slow
def test_refusal_is_clean_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "ann.json").write_text('{"images": []}')
    p = run("pipelines/data.py", *small(tmp_path))
    assert p.returncode == 2 and "Traceback" not in p.stderr and "refusing to overwrite" in p.stderr
    p = run("pipelines/data.py", *small(tmp_path), "--debug")
    assert p.returncode != 0 and "Traceback" in p.stderr


@pytest.mark.slow
def test_missing_config_file() -> None:
    p = run("pipelines/data.py", "--config", "configs/nope.yaml")
    assert p.returncode == 2 and p.stderr.strip() == "error: config file not found: configs/nope.yaml"
