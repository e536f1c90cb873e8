"""Shared fixtures: a tiny synthetic dataset written in the official layout (seconds to build)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from vqa.config import Config, load_config
from vqa.data.tasks import task_of
from vqa.model import ModelSpec, VQAModel

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


def browser_api() -> Any:
    """playwright.sync_api for a browser-test module, or the module skipped: no playwright, or no chromium binary.
    With VQA_REQUIRE_BROWSER (`make test-browser`, CI) a missing browser fails instead of skipping."""
    if os.environ.get("VQA_REQUIRE_BROWSER"):
        import playwright.sync_api as sync_api

        assert Path(CHROMIUM).exists(), "no chromium binary: apt-get install chromium"
        return sync_api
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium binary (apt-get install chromium; `make test-browser`)", allow_module_level=True)
    return sync_api


# a model of the tests' choosing: every field but the ones a test changes (the product's defaults are base.yaml's)
TEST_SPEC = {"variant": "attention", "rnn": "lstm", "bidirectional": False, "embed_dim": 300, "hidden_dim": 512,
             "answer_encoder": "rnn", "glimpses": 2, "attention_dim": 512, "dropout": 0.3, "count": False,
             "task": "telling", "attention": "additive", "question_glimpses": 0, "cell_context": 0}  # fmt: skip


def model_spec(vocab_size: int = 20, grid: tuple[int, int, int] = (16, 3, 4), **changes) -> ModelSpec:
    return ModelSpec(vocab_size, grid, **{**TEST_SPEC, **changes})


def build_model(spec: ModelSpec) -> VQAModel:
    """The network of ``spec`` as its task builds it (with the task's candidate parts)."""
    return task_of(spec.task).build_model(spec)


def tiny_config(root: Path, *extra: str) -> Config:
    """The default config, shrunk and pointed at ``root``."""
    return load_config(
        REPO / "configs" / "default.yaml",
        [
            f"data.annotations={root}/dataset_v7w_telling.json",
            f"data.images={root}/images",
            f"data.grounding={root}/v7w_telling_answers.json",
            f"run.dir={root}/run",
            "synth.train_images=24",
            "synth.val_images=6",
            "synth.test_images=8",
            *extra,
        ],
    )


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """A tiny synthetic dataset on disk, shared by the whole session (treat as read-only)."""
    from vqa.data.synth import write_dataset

    cfg = tiny_config(tmp_path_factory.mktemp("synth7w"))
    write_dataset(cfg)
    return cfg


@pytest.fixture(scope="session")
def trained_run(tiny_dataset, tmp_path_factory) -> list[str]:
    """The tiny dataset, its features (96 px: a 3x3 grid) and a 1-epoch attention model: the overrides to use it."""
    from accelerate import Accelerator

    from vqa.data.tasks.telling import load_telling
    from vqa.features.extract import extract_features
    from vqa.training import train

    d = tiny_dataset.data
    overrides = [f"data.annotations={d.annotations}", f"data.images={d.images}", f"data.grounding={d.grounding}",
                 f"run.dir={tmp_path_factory.mktemp('trained')}", "features.image_size=96", "features.num_workers=0",
                 "model.embed_dim=16", "model.hidden_dim=32", "model.attention_dim=32", "train.epochs=1",
                 "train.batch_size=8"]  # fmt: skip
    cfg = load_config(None, overrides)
    extract_features(cfg, load_telling(d.annotations, d.images).image_paths(), Accelerator(cpu=True))
    train(cfg, Accelerator(cpu=True))
    return overrides


@pytest.fixture(scope="session")
def trained_decoder(trained_run, tmp_path_factory) -> list[str]:
    """``trained_run``'s data and feature store, and a 3-epoch ``model.head=decoder`` model: the overrides."""
    from accelerate import Accelerator

    from vqa.training import train

    store = Path(next(o for o in trained_run if o.startswith("run.dir=")).partition("=")[2]) / "features"
    overrides = [*(o for o in trained_run if not o.startswith(("run.dir=", "train.epochs="))),
                 f"run.dir={tmp_path_factory.mktemp('decoder')}", f"features.dir={store}", "model.head=decoder",
                 "train.epochs=3"]  # fmt: skip
    train(load_config(None, overrides), Accelerator(cpu=True))
    return overrides
