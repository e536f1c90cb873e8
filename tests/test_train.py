"""Training: outputs, resume equivalence, learning above chance, no positional signal in candidate order."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from conftest import tiny_config
from safetensors.torch import load_file

from vqa.checkpoint import TrainerState
from vqa.config import load_config
from vqa.data.loader import EVAL_EPOCH, QAExamples, candidate_order
from vqa.data.synth import write_dataset
from vqa.data.tasks.telling import Telling, load_telling
from vqa.data.words import build_tokenizer, qa_table
from vqa.evaluation.evaluate import evaluate
from vqa.features.extract import extract_features
from vqa.training import train
from vqa.training.schedule import after_epoch, chance_note, resume_plan

FAST = ["features.image_size=96", "features.num_workers=0", "features.precision=fp32", "model.embed_dim=16",
        "model.hidden_dim=32", "model.attention_dim=32", "train.batch_size=8", "train.epochs=2"]  # fmt: skip


def setup_run(data_cfg, run_dir: Path, *extra: str):
    d = data_cfg.data
    paths = [f"data.annotations={d.annotations}", f"data.images={d.images}", f"data.grounding={d.grounding}"]
    return load_config(None, [*paths, f"run.dir={run_dir}", *FAST, *extra])


@pytest.fixture(scope="module")
def features_root(tiny_dataset, tmp_path_factory) -> Path:
    """Features of the tiny dataset, extracted once and copied into each run dir."""
    root = tmp_path_factory.mktemp("feat")
    cfg = setup_run(tiny_dataset, root)
    extract_features(cfg, load_telling(cfg.data.annotations, cfg.data.images).image_paths(), Accelerator(cpu=True))
    return root / "features"


def with_features(cfg, features_root: Path):
    import shutil

    shutil.copytree(features_root, Path(cfg.run.dir) / "features")
    return cfg


def test_training_writes_every_output(tiny_dataset, features_root, tmp_path) -> None:
    cfg = with_features(setup_run(tiny_dataset, tmp_path / "run"), features_root)
    state = train(cfg, Accelerator(cpu=True))
    run = tmp_path / "run"
    assert state.epoch == 2
    assert (run / "tokenizer" / "tokenizer.json").is_file() and (run / "qa" / "dataset_info.json").is_file()
    assert (run / "checkpoints" / "best" / "model.safetensors").is_file()
    meta = json.loads((run / "checkpoints" / "best" / "meta.json").read_text())
    assert meta["spec"]["grid"] == [1344, 3, 3] and meta["epoch"] in (1, 2)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best", "epoch_001", "epoch_002"]
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    best = max(rows, key=lambda r: r["val_accuracy"])  # the first of equal bests: a later tie is no gain
    assert (state.best_accuracy, state.best_epoch) == (best["val_accuracy"], best["epoch"]) == (
        meta["val_accuracy"], meta["epoch"]), "the kept weights are the best val epoch's, as logged"
    assert {"train_loss", "val_accuracy", "val_per_type", "lr", "questions_per_s", "data_wait"} <= set(rows[0])
    assert (run / "curves.png").stat().st_size > 1000
    assert train(cfg, Accelerator(cpu=True)).epoch == 2, "a finished run resumes to a no-op"


def test_resume_equals_an_uninterrupted_run(tiny_dataset, features_root, tmp_path) -> None:
    import shutil

    full = with_features(setup_run(tiny_dataset, tmp_path / "full"), features_root)
    train(full, Accelerator(cpu=True))
    # a run killed during epoch 2: everything of epoch 1 is there, nothing of epoch 2
    shutil.copytree(tmp_path / "full", tmp_path / "killed")
    shutil.rmtree(tmp_path / "killed" / "checkpoints" / "epoch_002")
    resumed = train(setup_run(tiny_dataset, tmp_path / "killed"), Accelerator(cpu=True))
    assert resumed.epoch == 2
    a = load_file(str(tmp_path / "full" / "checkpoints" / "epoch_002" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoints" / "epoch_002" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_candidate_order_carries_no_positional_signal(tiny_dataset, features_root, tmp_path) -> None:
    positions = np.array([np.argmax(candidate_order(0, e, q) == 0) for e in range(4) for q in range(2000)])
    share = np.bincount(positions, minlength=4) / len(positions)
    assert np.all(np.abs(share - 0.25) < 0.02), share  # always picking slot k scores ~25 %, for every k
    changed = np.mean([not np.array_equal(candidate_order(0, 0, q), candidate_order(0, 1, q)) for q in range(2000)])
    assert changed > 0.9, f"a new order every epoch: only {changed:.0%} of questions were reshuffled"  # 23/24 expected
    assert np.array_equal(candidate_order(3, EVAL_EPOCH, 7), candidate_order(3, EVAL_EPOCH, 7))


def test_constant_scores_count_wrong(tiny_dataset, features_root, tmp_path) -> None:
    from vqa.evaluation.evaluate import accuracy_of

    order = np.array([candidate_order(0, EVAL_EPOCH, q) for q in range(400)])
    out = {"scores": np.zeros((400, 4)), "order": order, "type": np.zeros(400, dtype=int)}
    assert accuracy_of(out)["accuracy"] == 0.0, "a tie is never a correct answer"
    out["scores"][:, 0] = 1.0  # always the first slot
    assert abs(accuracy_of(out)["accuracy"] - 0.25) < 0.06


@pytest.mark.slow
def test_a_small_run_learns_well_above_chance(tmp_path) -> None:
    data = tiny_config(tmp_path / "data", "synth.train_images=800", "synth.val_images=60", "synth.test_images=2")
    write_dataset(data)
    cfg = setup_run(data, tmp_path / "run", "train.epochs=6", "train.attention_supervision=0.5",
                    "train.batch_size=16", "eval.split=val", "features.image_size=224", "features.precision=auto",
                    "model.embed_dim=128", "model.hidden_dim=256", "model.attention_dim=256")  # fmt: skip
    extract_features(cfg, load_telling(cfg.data.annotations, cfg.data.images).image_paths(), Accelerator(cpu=True))
    train(cfg, Accelerator(cpu=True))
    rows = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"], "the loss falls"
    metrics = evaluate(cfg, Accelerator(cpu=True))
    sigma = (0.25 * 0.75 / metrics["n"]) ** 0.5  # of chance accuracy (0.25) on n questions: 0.025 on 300
    assert metrics["accuracy"] > 0.25 + 4 * sigma, metrics  # 0.35: 4 sigma above chance
    assert metrics["grounding"]["hit"] > 0.15  # uniform attention points into a box ~6 % of the time


def test_examples_shuffle_per_epoch(tiny_dataset, features_root, tmp_path) -> None:
    ds = load_telling(tiny_dataset.data.annotations, tiny_dataset.data.images)
    table = qa_table(Telling(), ds, ds.split("train"), build_tokenizer(ds.split("train"), 1), 16)
    ex = QAExamples(table, None, seed=0, train=True)
    first = [ex[i]["label"] for i in range(len(ex))]
    ex.set_epoch(1)
    second = [ex[i]["label"] for i in range(len(ex))]
    assert first != second
    item = ex[0]
    assert item["candidates"][item["label"]] == table[0]["candidate_ids"][0], "the label points at the answer"


def test_sigint_mid_epoch_saves_and_resumes_exactly(tiny_dataset, features_root, tmp_path, monkeypatch) -> None:
    """Ctrl-C in epoch 2 saves a mid-epoch checkpoint; the resumed run ends bit-identical to an uninterrupted one."""
    import os
    import signal

    import vqa.training.loop as train_module
    from vqa.common.errors import Stopped

    real, calls = train_module.model_inputs, []

    def counted(batch):
        calls.append(1)
        return real(batch)

    full = with_features(setup_run(tiny_dataset, tmp_path / "full"), features_root)
    monkeypatch.setattr(train_module, "model_inputs", counted)
    train(full, Accelerator(cpu=True))
    n = len(calls) // 2  # train batches per epoch (2 epochs; validation does not go through train.model_inputs)
    stopped = with_features(setup_run(tiny_dataset, tmp_path / "stopped"), features_root)
    calls.clear()

    def signal_in_epoch_2(batch):
        calls.append(1)
        if len(calls) == n + 3:  # batch 3 of epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return real(batch)

    monkeypatch.setattr(train_module, "model_inputs", signal_in_epoch_2)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (`cmd &` ignores it)
    try:
        with pytest.raises(Stopped, match=rf"SIGINT: stopped in epoch 2 of 2 after batch 3 of {n}") as e:
            train(stopped, Accelerator(cpu=True))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the handler is removed on exit"
    finally:
        signal.signal(signal.SIGINT, previous)
    assert e.value.exit_code == 130
    names = sorted(p.name for p in (tmp_path / "stopped" / "checkpoints").iterdir())
    assert names == ["best", "epoch_001", "epoch_001_batch_00003"]
    monkeypatch.setattr(train_module, "model_inputs", real)
    assert train(stopped, Accelerator(cpu=True)).epoch == 2
    names = sorted(p.name for p in (tmp_path / "stopped" / "checkpoints").iterdir())
    assert names == ["best", "epoch_001", "epoch_002"], "the mid-epoch checkpoint is superseded"
    a = load_file(str(tmp_path / "full" / "checkpoints" / "epoch_002" / "model.safetensors"))
    b = load_file(str(tmp_path / "stopped" / "checkpoints" / "epoch_002" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a), "same batches, same dropout masks, same weights"
    log_a = [json.loads(x) for x in (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "stopped" / "train_log.jsonl").read_text().splitlines()]
    assert [r["val_accuracy"] for r in log_a] == [r["val_accuracy"] for r in log_b]
    assert log_a[1]["train_loss"] == pytest.approx(log_b[1]["train_loss"], rel=1e-6), "the epoch loss spans the stop"


@pytest.mark.parametrize("damage", ["pickle that runs code", "other model", "truncated"])
def test_a_bad_checkpoint_is_refused_on_resume(tiny_dataset, features_root, tmp_path, damage) -> None:
    import os
    import shutil

    from vqa.common.errors import VQAError

    cfg = with_features(setup_run(tiny_dataset, tmp_path / "run", "train.epochs=1"), features_root)
    train(cfg, Accelerator(cpu=True))
    ckpt = tmp_path / "run" / "checkpoints" / "epoch_001"
    if damage == "pickle that runs code":

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'pwned'}",))

        torch.save({"state": {}, "param_groups": [Evil()]}, ckpt / "optimizer.bin")
    elif damage == "other model":
        shutil.rmtree(tmp_path / "run" / "checkpoints" / "best")
        cfg = setup_run(tiny_dataset, tmp_path / "run", "train.epochs=2", "model.hidden_dim=48")
    else:
        (ckpt / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:100])
    with pytest.raises(VQAError, match=rf"cannot resume from {ckpt}") as e:
        train(setup_run(tiny_dataset, tmp_path / "run", "train.epochs=2") if damage != "other model" else cfg,
              Accelerator(cpu=True))  # fmt: skip
    assert "train.resume=never" in e.value.render()
    assert not (tmp_path / "pwned").exists(), "weights_only loading must refuse code in a pickle"


def run_schedule(accuracy: list[float], loss: list[float], **train: float) -> tuple[TrainerState, list]:
    """Feed ``schedule.after_epoch`` a run's val accuracy and loss per epoch; (final state, stop reason per epoch)."""
    t = SimpleNamespace(**{"patience": 3, "cooldown": 0.2, "epochs": 60, **train})
    state, reasons = TrainerState(), []
    for acc, val_loss in zip(accuracy, loss, strict=True):
        state.epoch += 1
        improved = acc > state.best_accuracy
        if improved:
            state.best_accuracy, state.best_epoch = acc, state.epoch
        reasons.append(after_epoch(state, improved, val_loss, t))
        if reasons[-1]:
            break
    return state, reasons


def test_the_schedule_does_not_stop_a_run_that_is_still_learning() -> None:
    """A slow learner: val accuracy flat for 2 epochs (under the patience of 3), then a new best, again and again,
    while its val loss *rises* (it grows confident on what it knows). It never stalls: the LR stays at its peak."""
    accuracy = [0.30, 0.30, 0.29, 0.35, 0.35, 0.34, 0.41, 0.40, 0.41, 0.48, 0.47, 0.47, 0.55]
    loss = [1.2 + 0.05 * i for i in range(len(accuracy))]
    state, reasons = run_schedule(accuracy, loss)
    assert reasons == [None] * len(accuracy) and state.cooldown_from == 0
    # the same for a run whose val accuracy stalls while its val loss still falls
    state, reasons = run_schedule([0.4] * 10, [1.0 - 0.01 * i for i in range(10)])
    assert reasons == [None] * 10 and state.cooldown_from == 0


def test_the_schedule_cools_down_after_a_stall_then_stops() -> None:
    """No new best val accuracy and no new lowest val loss for ``patience`` epochs: the LR falls to 0 over
    max(2, ceil(cooldown x epochs so far)) epochs, and training stops at the end of it, saying why."""
    accuracy = [0.5, 0.6, 0.7] + [0.7] * 3 + [0.72, 0.71, 0.7]
    loss = [1.0, 0.9, 0.8] + [0.85] * 6
    state, reasons = run_schedule(accuracy, loss)
    assert (state.cooldown_from, state.cooldown_epochs) == (6, 2), "stalled at epoch 6: 3 epochs without progress"
    assert reasons[:7] == [None] * 7 and "stopped after the cooldown" in reasons[7] and len(reasons) == 8
    assert "best val accuracy 0.7200 at epoch 7" in reasons[7], "a new best in the cooldown is still kept"
    state, _ = run_schedule([0.5 + 0.01 * i for i in range(20)] + [0.6] * 5, [1.0] * 25)
    assert state.cooldown_epochs == 5, "the cooldown is a share of the run: ceil(0.2 x 23)"
    fresh = TrainerState(epoch=1)
    after_epoch(fresh, False, float("nan"), SimpleNamespace(patience=3, cooldown=0.2, epochs=60))
    assert fresh.best_loss is None, "a diverged epoch is no lowest loss"


def test_a_val_loss_that_creeps_towards_zero_is_no_progress() -> None:
    """Every val question right from epoch 4, the loss falling by ever smaller steps (0.0000 printed): the run
    stalls after ``patience`` epochs instead of training on to the ceiling; a loss that falls by a real step still
    counts."""
    accuracy = [0.6, 0.9, 0.99] + [1.0] * 20
    loss = [0.8, 0.3, 0.05] + [0.0009 * 0.7**i for i in range(20)]
    state, reasons = run_schedule(accuracy, loss)
    assert state.cooldown_from == 7 and "stopped after the cooldown" in reasons[-1] and len(reasons) == 9
    state, reasons = run_schedule([0.5] * 8, [1.0 - 0.02 * i for i in range(8)])
    assert reasons == [None] * 8, "0.02 lower each epoch at ~0.9: learning"


def test_a_run_that_ends_at_chance_on_a_family_says_so_plainly() -> None:
    """The end-of-training line names the families still within 3 standard errors of chance (1/4), with their
    accuracy and what to try; a family well above chance, or a run above chance everywhere, gets no such line."""
    counts = {"what is written": 100, "what color is": 100, "when was": 400}
    # chance 0.25; 3 standard errors on 100 questions: 0.13, on 400: 0.065
    note = chance_note({"what is written": 0.31, "what color is": 0.97, "when was": 0.30}, counts, 4)
    assert note is not None and note.startswith("at chance on 2 of 3 families")
    assert "what is written 0.31" in note and "when was 0.30" in note and "what color" not in note
    assert "model.evidence=true" in note and "train.attention_supervision" in note, "what to try"
    everything = chance_note({"what is written": 0.2, "what color is": 0.26, "when was": 0.25}, counts, 4)
    assert everything is not None and everything.startswith("at chance on every question family")
    assert chance_note({"what is written": 0.40, "what color is": 0.97, "when was": 0.33}, counts, 4) is None


def test_the_schedule_ends_its_cooldown_by_the_epoch_ceiling() -> None:
    state, reasons = run_schedule([0.1 * i for i in range(10)], [1.0 - 0.01 * i for i in range(10)], epochs=10)
    assert (state.cooldown_from, state.cooldown_epochs) == (8, 2), "cooldown over the last 2 of 10 epochs"
    assert "reached train.epochs=10 while still making progress" in reasons[-1] and len(reasons) == 10
    resume_plan(state, SimpleNamespace(epochs=20))
    assert state.cooldown_from == 0, "a higher ceiling continues the run at the peak LR"
    stalled, _ = run_schedule([0.5] * 6, [1.0] * 6)
    resume_plan(stalled, SimpleNamespace(epochs=100))
    assert stalled.cooldown_from == 4, "a run that stalled stays stopped"


def test_the_lr_warms_up_stays_and_falls_linearly_to_zero() -> None:
    from vqa.training.schedule import WarmupStableDecay

    schedule = WarmupStableDecay(warmup=4)
    assert [schedule(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    schedule.follow(TrainerState(cooldown_from=2, cooldown_epochs=2), steps_per_epoch=5)
    assert schedule(9) == 1.0 and schedule(14) == pytest.approx(0.5) and schedule(19) == 0.0


def test_early_stopping_and_its_resume(tiny_dataset, features_root, tmp_path) -> None:
    """With a learning rate too small to change anything, val accuracy and loss stall after epoch 1: patience 2
    starts the cooldown at epoch 3, which ends at epoch 5 of 10. A run killed mid-cooldown resumes to the same
    stop and the same weights; a run the ceiling ended continues when the ceiling is raised."""
    import shutil

    args = ["train.epochs=10", "train.patience=2", "train.lr=1e-12"]
    full = with_features(setup_run(tiny_dataset, tmp_path / "full", *args), features_root)
    state = train(full, Accelerator(cpu=True))
    assert (state.epoch, state.cooldown_from, state.best_epoch) == (5, 3, 1)
    rows = [json.loads(line) for line in (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()]
    assert [r["stop"] for r in rows[:-1]] == [None] * 4
    assert rows[-1]["stop"].startswith("stopped after the cooldown: no new best val accuracy or lowest val loss")
    assert rows[3]["lr"] < rows[2]["lr"] and rows[-1]["lr"] == 0.0, "the cooldown took the LR to 0"
    assert rows[0]["val_per_family"] and set(rows[0]["val_per_family"]) <= {"how many", "how many digits",
        "how many letters", "what shape is", "what color is", "where is", "how is", "when was", "what is written",
        "where on the page", "what color ink"}  # fmt: skip
    assert train(full, Accelerator(cpu=True)).epoch == 5, "a stopped run reruns to a no-op"

    shutil.copytree(tmp_path / "full", tmp_path / "killed")  # killed during epoch 5, in the cooldown
    shutil.rmtree(tmp_path / "killed" / "checkpoints" / "epoch_005")
    resumed = train(setup_run(tiny_dataset, tmp_path / "killed", *args), Accelerator(cpu=True))
    assert (resumed.epoch, resumed.cooldown_from, resumed.cooldown_epochs) == (5, 3, 2)
    a = load_file(str(tmp_path / "full" / "checkpoints" / "epoch_005" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoints" / "epoch_005" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)

    short = ["train.epochs=2", "train.patience=5"]
    ended = train(with_features(setup_run(tiny_dataset, tmp_path / "short", *short), features_root),
                  Accelerator(cpu=True))  # fmt: skip
    assert ended.epoch == 2 and not ended.stalled
    more = train(setup_run(tiny_dataset, tmp_path / "short", "train.epochs=3", "train.patience=5"),
                 Accelerator(cpu=True))  # fmt: skip
    assert more.epoch == 3, "a higher ceiling continues a run the ceiling ended"


def test_tensorboard_tracker_writes_readable_events(tiny_dataset, features_root, tmp_path) -> None:
    """train.log_with=tensorboard: Accelerate's tracker writes loss, val accuracy per type, LR and speed per epoch
    under <run.dir>/tb/train, and TensorBoard's own reader reads them back."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vqa.accel import make_accelerator

    cfg = with_features(setup_run(tiny_dataset, tmp_path / "run", "train.log_with=tensorboard"), features_root)
    state = train(cfg, make_accelerator(cfg, training=True))
    events = EventAccumulator(str(tmp_path / "run" / "tb" / "train"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/val", "val_accuracy/all", "lr", "questions_per_s"} <= tags
    assert any(t.startswith("val_accuracy/") and t != "val_accuracy/all" for t in tags), "per question type"
    acc = events.Scalars("val_accuracy/all")
    assert [e.step for e in acc] == [1, 2]
    assert acc[state.best_epoch - 1].value == pytest.approx(state.best_accuracy)


def test_a_missing_tracker_package_is_a_clear_error(tiny_dataset, tmp_path, monkeypatch) -> None:
    import importlib.util

    from vqa.accel import make_accelerator
    from vqa.common.errors import VQAError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    cfg = setup_run(tiny_dataset, tmp_path / "run", "train.log_with=tensorboard")
    with pytest.raises(VQAError, match=r"needs the tensorboard package: pip install -e '\.\[tensorboard\]'"):
        make_accelerator(cfg, training=True)
