"""A run knows its data: resuming and evaluating refuse a checkpoint trained on other data than today's, with one
line naming the change; a checkpoint older than fingerprints gets one warning; a test split that shares images
with the train split is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from accelerate import Accelerator
from test_train import FAST

from vqa.common.errors import VQAError
from vqa.config import load_config
from vqa.data.tasks.telling import load_telling
from vqa.evaluation.evaluate import evaluate
from vqa.features.extract import extract_features
from vqa.training import train


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory) -> Path:
    """A 1-epoch run on a copy of the tiny dataset's annotations (the images and features are shared)."""
    root = tmp_path_factory.mktemp("provenance")
    d = tiny_dataset.data
    shutil.copy(d.annotations, root / "telling.json")
    cfg = config(root / "run", root / "telling.json", d.images)
    extract_features(cfg, load_telling(cfg.data.annotations, cfg.data.images).image_paths(), Accelerator(cpu=True))
    train(cfg, Accelerator(cpu=True))
    return root


def config(run_dir: Path, annotations: Path, images: str, *extra: str):
    return load_config(None, [f"data.annotations={annotations}", f"data.images={images}", "data.grounding=null",
                              f"run.dir={run_dir}", *FAST, "train.epochs=1", *extra])  # fmt: skip


def changed_copy(trained: Path, tmp_path: Path, change) -> tuple[Path, Path]:
    """The trained run copied to ``tmp_path`` with its annotations edited by ``change(data)``."""
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    data = json.loads((trained / "telling.json").read_text())
    change(data)
    (tmp_path / "telling.json").write_text(json.dumps(data))
    return run, tmp_path / "telling.json"


def resplit(data: dict) -> None:
    """The first test image moves to the train split."""
    next(im for im in data["images"] if im["split"] == "test")["split"] = "train"


def edit_answer(data: dict) -> None:
    qa = next(im for im in data["images"] if im["split"] == "train")["qa_pairs"][0]
    qa["answer"] = "Something else entirely."


def add_image(data: dict) -> None:
    """A new test image (an existing picture under a new id) with one question."""
    image = json.loads(json.dumps(next(im for im in data["images"] if im["split"] == "test")))
    image["image_id"], image["filename"] = 99999, "v7w_99999.jpg"
    image["qa_pairs"] = [{**image["qa_pairs"][0], "qa_id": 999999, "image_id": 99999}]
    data["images"].append(image)


@pytest.mark.parametrize(("change", "said"), [
    (resplit, "the train split's images changed"),
    (edit_answer, "a question or answer of the train split was edited"),
    (add_image, "the test split's images changed"),
])  # fmt: skip
def test_training_and_evaluation_refuse_a_run_whose_data_changed(trained, tiny_dataset, tmp_path, change,
                                                                 said) -> None:  # fmt: skip
    images = tmp_path / "images"
    shutil.copytree(tiny_dataset.data.images, images)
    shutil.copy(images / "v7w_1.jpg", images / "v7w_99999.jpg")
    run, annotations = changed_copy(trained, tmp_path, change)
    cfg = config(run, annotations, str(images), "train.epochs=2", f"features.dir={trained / 'run' / 'features'}")
    for stage in (lambda: train(cfg, Accelerator(cpu=True)), lambda: evaluate(cfg, Accelerator(cpu=True))):
        with pytest.raises(VQAError) as e:
            stage()
        line = e.value.render()
        assert "\n" not in line and "trained on other data than today's" in line and said in line
        assert "train.resume=never" in line
    assert not (run / "eval").exists(), "nothing was written"
    assert len(list((run / "checkpoints").glob("epoch_*"))) == 1, "no epoch trained on the new data"


def test_a_checkpoint_older_than_fingerprints_gets_one_warning(trained, tiny_dataset, tmp_path, capsys) -> None:
    run, annotations = changed_copy(trained, tmp_path, lambda data: None)
    for meta in run.glob("checkpoints/*/meta.json"):
        meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "data"}))
    cfg = config(run, annotations, tiny_dataset.data.images, f"features.dir={trained / 'run' / 'features'}")
    metrics = evaluate(cfg, Accelerator(cpu=True))
    warned = [line for line in capsys.readouterr().out.splitlines() if "predates data fingerprints" in line]
    assert metrics["n"] > 0 and len(warned) == 1


def test_evaluation_refuses_a_test_split_that_shares_images_with_train(trained, tiny_dataset, tmp_path) -> None:
    """A test image record whose file is a train image's (another image_id, the same picture): refused by name,
    whether or not the model was trained on it."""
    data = json.loads((trained / "telling.json").read_text())
    train_file = next(im for im in data["images"] if im["split"] == "train")["filename"]
    test_image = next(im for im in data["images"] if im["split"] == "test")
    test_image["filename"] = train_file
    (tmp_path / "leaky.json").write_text(json.dumps(data))
    cfg = config(tmp_path / "run", tmp_path / "leaky.json", tiny_dataset.data.images, "train.resume=never",
                 f"features.dir={tmp_path / 'features'}")  # fmt: skip
    extract_features(cfg, load_telling(cfg.data.annotations, cfg.data.images).image_paths(), Accelerator(cpu=True))
    train(cfg, Accelerator(cpu=True))
    with pytest.raises(VQAError, match=f"the test split shares 1 image.*image_id {test_image['image_id']}"):
        evaluate(cfg, Accelerator(cpu=True))
