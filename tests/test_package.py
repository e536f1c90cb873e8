"""The package as a user installs it: a wheel built from the sources, installed into a folder outside the repository
(``pip install --no-deps --target``: the venv's torch is reused, nothing is downloaded), and used from yet another
folder: the Python API loads a trained run, and the ``vqa7w`` console script evaluates it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vqa.config import load_config, save_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "vqa")  # what the wheel is built from (an sdist's share)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the built wheel, the folder it is installed into). Built from a copy of the sources, so that the build
    writes nothing into the checkout."""
    src, dist, target = (tmp_path_factory.mktemp(n) for n in ("src", "dist", "site"))
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree
                                            else {}))  # fmt: skip
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, src], check=True)
    wheel = next(dist.glob("vqa7w-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True)
    return wheel, target


def run_outside(target: Path, cwd: Path, args: list[str]) -> subprocess.CompletedProcess:
    """``args`` with only the installed copy of ``vqa`` importable (not the checkout), from ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_wheel_carries_the_base_config_the_pages_and_the_command(installed) -> None:
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    shipped = ("vqa/config/base.yaml", "vqa/report/explorer_static/explorer.js", "vqa/report/serve_static/serve.js",
               "vqa/commands/train.py")
    assert not [part for part in shipped if part not in names]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "vqa7w = vqa.commands:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_an_installed_wheel_loads_a_run_and_evaluates_it_from_another_folder(installed, trained_run, tmp_path) -> None:
    """The README's first API line and `vqa7w eval`, run where no checkout is in sight."""
    _, target = installed
    source = Path(next(o for o in trained_run if o.startswith("run.dir=")).partition("=")[2])
    run = tmp_path / "run"
    for part in ("checkpoints", "tokenizer"):
        shutil.copytree(source / part, run / part)
    cfg = load_config(None, [*(o for o in trained_run if not o.startswith("run.dir=")), f"run.dir={run}",
                             f"features.dir={source / 'features'}"])  # fmt: skip
    save_config(cfg)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    api = ("import json, sys, vqa\n"
           "from vqa import Predictor\n"
           "p = Predictor.from_run(sys.argv[1])\n"
           "print(json.dumps({'where': vqa.__file__, 'temperature': p.temperature}))\n")  # fmt: skip
    out = run_outside(target, elsewhere, [sys.executable, "-c", api, str(run)])
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(shown["where"]).is_relative_to(target), "the installed copy, not the checkout, was imported"
    out = run_outside(target, elsewhere, [str(target / "bin" / "vqa7w"), "eval", "--config", str(run / "config.yaml")])
    assert out.returncode == 0, out.stderr
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["n"] > 0 and 0.0 <= metrics["accuracy"] <= 1.0
    listing = run_outside(target, elsewhere, [str(target / "bin" / "vqa7w"), "--help"])
    assert listing.returncode == 0 and all(c in listing.stdout for c in ("features", "train", "eval", "inspect"))
