"""A hostile-input corpus, run through the stage entry points exactly as users run them.

Why: the unit tests (test_data.py, test_config.py) prove that each check exists; they do not prove that a user who
hands a stage a broken dataset, config or checkpoint sees *one* clear message naming the bad item, gets exit code 2
and no traceback, and finds nothing half-written in the run folder that a later stage would trust. Each case below
writes one bad input into ``tmp_path``, runs ``vqa.cli.run(main, argv)`` in-process (a subprocess costs ~4 s of
torch import; two cases run as real subprocesses to show the same at process level), and checks exactly that.
A few inputs are odd but legal (extra fields, non-ASCII text): those must be accepted end to end.

The dataset-record checks themselves are unit-tested in test_data.py (``MALFORMED``); here the point is the path
from the file a user wrote to what the stage prints.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, build_model
from safetensors.torch import save_file

from vqa import cli
from vqa.data.synth.pointing import annotation_paths
from vqa.model import ModelSpec

CONFIG = REPO / "configs" / "default.yaml"
USER_ERROR = 2  # the exit code of every input error (README, vqa/cli.py)
# Features small enough that the accepted cases run the whole stage in a second or two (1x1 grid, random weights).
FAST_FEATURES = ["features.image_size=32", "features.pretrained=false", "features.precision=fp32",
                 "features.num_workers=0", "features.batch_size=16"]  # fmt: skip
# What a later stage trusts, per stage: present only after a complete, successful run.
TRUSTED = {
    "features": ["features/manifest.json", "features/shard_*.npy"],
    "train": ["checkpoints/best", "checkpoints/epoch_*"],
    "evaluate": ["eval/*/metrics.json", "eval/*/predictions.json", "eval/*/per_question.jsonl"],
}
STAGES: dict[str, Callable[[Sequence[str] | None], None]] = {}


def stage_main(name: str) -> Callable[[Sequence[str] | None], None]:
    """``main`` of the stage's command (``vqa/commands/<name>.py``, behind ``pipelines/<name>.py`` and ``vqa7w``)."""
    if name not in STAGES:
        STAGES[name] = importlib.import_module(f"vqa.commands.{name}").main
    return STAGES[name]


# ------------------------------------------------------------------------------------------------ the workspace
@dataclass
class Env:
    """One case's private workspace: a copy of the tiny dataset's annotations (and, for eval, of the trained run)."""

    tmp: Path
    data: dict[str, Any]
    images: Path
    run: Path
    base: list[str] = field(default_factory=list)  # the stage's argv before the case's own arguments
    ckpt: Path | None = None

    @property
    def ann(self) -> Path:
        return self.tmp / "ann.json"

    @property
    def image0(self) -> dict[str, Any]:
        return self.data["images"][0]

    @property
    def qa0(self) -> dict[str, Any]:
        return self.image0["qa_pairs"][0]

    def write(self, content: str | bytes | None = None) -> None:
        """The annotations file: the (edited) data, or ``content`` verbatim."""
        if content is None:
            content = json.dumps(self.data, ensure_ascii=False)
        self.ann.write_bytes(content.encode() if isinstance(content, str) else content)

    def fields(self) -> dict[str, Any]:
        """What a case's expected message may refer to: ``{ann}``, ``{iid}``, ``{qid}``, ``{ckpt}``, ..."""
        return {"tmp": self.tmp, "ann": self.ann, "images": self.images, "run": self.run, "ckpt": self.ckpt,
                "iid": self.image0["image_id"], "qid": self.qa0["qa_id"],
                "iid2": self.data["images"][1]["image_id"], "filename": self.image0["filename"],
                "answer": self.qa0.get("answer")}  # fmt: skip


# ------------------------------------------------------------------------------------------------ case builders
Prepare = Callable[[Env], list[str]]  # writes the hostile input, returns the case's extra arguments


def qa(key: str, value: Any) -> Prepare:
    """Set one field of the first QA of the first image."""

    def prepare(env: Env) -> list[str]:
        env.qa0[key] = value
        env.write()
        return []

    return prepare


def edit(mutate: Callable[[Env], None]) -> Prepare:
    def prepare(env: Env) -> list[str]:
        mutate(env)
        env.write()
        return []

    return prepare


def extra_fields(env: Env) -> None:
    """Fields the loader does not know, on a QA and on an image (converted datasets carry such)."""
    env.qa0.update(confidence=0.9, source="turk")
    env.image0.update(width=640, height=480)


def raw_file(content: str | bytes) -> Prepare:
    def prepare(env: Env) -> list[str]:
        env.write(content)
        return []

    return prepare


def args(*extra: str) -> Prepare:
    """Only command-line arguments (``{tmp}`` is replaced by the case's folder)."""

    def prepare(env: Env) -> list[str]:
        env.write()
        return [a.format(tmp=env.tmp) for a in extra]

    return prepare


def config_file(text: str) -> Prepare:
    def prepare(env: Env) -> list[str]:
        env.write()
        (env.tmp / "exp.yaml").write_text(text)
        return ["--config", str(env.tmp / "exp.yaml")]

    return prepare


def symlinked_image(env: Env) -> list[str]:
    """A private image folder whose first image is a symlink to a (valid) image outside it."""
    private = env.tmp / "images"
    shutil.copytree(env.images, private)
    target = private / env.image0["filename"]
    outside = env.tmp / "outside.jpg"
    shutil.move(target, outside)
    os.symlink(outside, target)
    env.images = private
    env.write()
    return [f"data.images={private}"]


class PickleBomb:
    """Unpickling this runs a shell command: what a malicious ``.bin``/``.pt`` checkpoint carries."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (self.command,)


def checkpoint(mutate: Callable[[Path], None]) -> Prepare:
    """A copy of the trained run's ``best/`` checkpoint, damaged by ``mutate``, given as ``eval.checkpoint``."""

    def prepare(env: Env) -> list[str]:
        env.ckpt = env.tmp / "ckpt"
        shutil.copytree(env.run / "checkpoints" / "best", env.ckpt)
        mutate(env.ckpt)
        return [f"eval.checkpoint={env.ckpt}"]

    return prepare


def other_weights(**changes: Any) -> Callable[[Path], None]:
    """Replace the weights with those of a model built with other settings (meta.json still describes ours)."""

    def mutate(ckpt: Path) -> None:
        spec = json.loads((ckpt / "meta.json").read_text())["spec"]
        model = build_model(ModelSpec(**{**spec, "grid": tuple(spec["grid"]), **changes}))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt / "model.safetensors"))

    return mutate


def coherent_other_model(**changes: Any) -> Callable[[Path], None]:
    """Weights and meta.json of another model that agree with each other (a checkpoint copied from another run)."""

    def mutate(ckpt: Path) -> None:
        meta = json.loads((ckpt / "meta.json").read_text())
        meta["spec"].update(changes)
        (ckpt / "meta.json").write_text(json.dumps(meta))
        other_weights()(ckpt)

    return mutate


def truncate(ckpt: Path) -> None:
    path = ckpt / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def pickle_bomb(ckpt: Path) -> None:
    """A torch pickle under the safetensors name; loading it with pickle would create ``<tmp>/pwned``."""
    torch.save({"weights": PickleBomb(f"touch {ckpt.parent / 'pwned'}")}, ckpt / "model.safetensors")


def remove(name: str) -> Callable[[Path], None]:
    def mutate(ckpt: Path) -> None:
        (ckpt / name).unlink()

    return mutate


def overwrite(name: str, text: str) -> Callable[[Path], None]:
    def mutate(ckpt: Path) -> None:
        (ckpt / name).write_text(text)

    return mutate


# ------------------------------------------------------------------------------------------------ the corpus
@dataclass(frozen=True)
class Case:
    stage: str  # pipelines/<stage>.py
    prepare: Prepare
    expect: str  # a fragment of stderr naming the item; formatted with Env.fields(); "" for accepted inputs
    accepted: bool = False  # odd but legal: the stage must succeed
    subprocess: bool = False  # run as a real process instead of in-process
    task: str = "telling"  # pointing: the case edits the tiny world's pointing file (data.task=pointing)


CASES: dict[str, Case] = {
    # ---- the dataset file, given to the features stage
    "dataset/invalid JSON": Case("features", raw_file('{"images": [}'), "{ann}: not valid JSON (line 1, column 13)"),
    "dataset/top level a list": Case("features", raw_file("[]"),
                                     "{ann}: the top level must be an object with an 'images' list, got list"),
    "dataset/not UTF-8": Case("features", raw_file('{"images": "caf\xe9"}'.encode("latin-1")),
                              "{ann}: not UTF-8 text (invalid continuation byte at byte 15)"),
    "dataset/missing field": Case("features", edit(lambda e: e.qa0.pop("answer")),
                                  "image_id {iid} qa_pairs[0] qa_id {qid}: missing field 'answer'"),
    "dataset/extra unknown fields": Case("features", edit(extra_fields), "", accepted=True),
    "dataset/wrong type": Case("features", qa("question", 42),
                               "image_id {iid} qa_pairs[0] qa_id {qid}: 'question' must be a string, got int"),
    "dataset/2 candidates": Case("features", qa("multiple_choices", ["At noon."]),
                                 "qa_id {qid}: 'multiple_choices' must hold exactly 3 distractors, got 1"),
    "dataset/5 candidates": Case("features", qa("multiple_choices", ["A.", "B.", "C.", "D."]),
                                 "qa_id {qid}: 'multiple_choices' must hold exactly 3 distractors, got 4"),
    "dataset/duplicate candidates": Case("features", qa("multiple_choices", ["At noon.", "at NOON.", "At dawn."]),
                                         "qa_id {qid}: duplicate distractors after lowercasing: ['at noon.']"),
    "dataset/answer among distractors": Case("features", edit(lambda e: e.qa0.update(
        multiple_choices=[e.qa0["answer"].upper(), "B.", "C."])),
        "qa_id {qid}: the answer '{answer}' is also among the distractors"),
    "dataset/empty question": Case("features", qa("question", " \t"), "qa_id {qid}: 'question' is empty"),
    "dataset/10k-char question": Case("features", qa("question", "why " * 2500),
                                      "qa_id {qid}: 'question' is 10000 characters long (limit 1000)"),
    "dataset/non-ASCII text": Case("features", edit(lambda e: e.qa0.update(
        question="Où est l'étoile? 星星在哪里？ 🌟", answer="À gauche — 左边.")), "", accepted=True),
    "dataset/duplicate qa_id": Case("features", edit(lambda e: e.data["images"][1]["qa_pairs"][0].update(
        qa_id=e.qa0["qa_id"])), "image_id {iid2} qa_id {qid}: duplicate qa_id (also in image_id {iid})",
        subprocess=True),
    "dataset/duplicate image_id": Case("features", edit(lambda e: e.data["images"][1].update(image_id=e.image0[
        "image_id"])), "image_id {iid}: duplicate image_id (also images[1])"),
    "dataset/filename with ..": Case("features", edit(lambda e: e.image0.update(filename="../v7w_1.jpg")),
                                     "image_id {iid}: filename '../v7w_1.jpg' escapes the image folder"),
    "dataset/absolute filename": Case("features", edit(lambda e: e.image0.update(
        filename=str(e.images / "v7w_1.jpg"))), "image_id {iid}: filename '{images}/v7w_1.jpg' is an absolute path"),
    "dataset/symlink out of the image folder": Case("features", symlinked_image,
                                                    "image_id {iid}: filename '{filename}' resolves to {tmp}/"
                                                    "outside.jpg, outside the image folder"),
    # ---- the pointing file (data.task=pointing), given to the features stage
    "pointing/unknown box_id": Case("features", qa("answer", 999999),
                                    "qa_id {qid}: 'answer' is box_id 999999, which is not in 'boxes'", task="pointing"),
    "pointing/answer among distractors": Case("features", edit(lambda e: e.qa0.update(multiple_choices=[
        e.qa0["answer"], *e.qa0["multiple_choices"][1:]])),
        "qa_id {qid}: the answer box_id {answer} is also among the distractors", task="pointing"),
    "pointing/duplicate candidates": Case("features", edit(lambda e: e.qa0.update(multiple_choices=[
        e.qa0["multiple_choices"][0]] * 3)), "qa_id {qid}: duplicate distractor box_ids", task="pointing"),
    "pointing/text answer": Case("features", qa("answer", "the red star"),
                                 "qa_id {qid}: 'answer' must be a box_id (an integer), got 'the red star'",
                                 task="pointing"),
    "pointing/box outside its image": Case("features", edit(lambda e: next(
        b for b in e.data["boxes"] if b["box_id"] == e.qa0["answer"]).update(x=5000)),
        "image_id {iid} qa_id {qid}: box_id {answer} starts at (5000,", task="pointing"),
    "pointing/box with a negative size": Case("features", edit(lambda e: e.data["boxes"][0].update(width=-3)),
                                              "boxes[0] (box_id 1): the box is empty", task="pointing"),
    "pointing/no boxes list (a telling file)": Case("features", edit(lambda e: e.data.pop("boxes")),
                                                    "a pointing file must have a top-level 'boxes' list",
                                                    task="pointing"),
    "pointing/box names changed, extra fields": Case("features", edit(lambda e: [b.update(name="?", score=1.0)
                                                                                for b in e.data["boxes"]]),
                                                     "", accepted=True, task="pointing"),
    # ---- configuration
    "config/unknown key in the file": Case("features", config_file("train:\n  lrr: 0.001\n"),
                                           "{tmp}/exp.yaml: unknown key 'train.lrr' (did you mean 'train.lr'?)"),
    "config/unknown key on the command line": Case("features", args("features.backbnoe=resnet50"),
                                                   "command line: unknown key 'features.backbnoe' (did you mean "
                                                   "'features.backbone'?)"),
    "config/wrong type": Case("features", args("features.batch_size=big"),
                              "command line: 'features.batch_size' must be int, got str 'big'"),
    "config/features.batch_size=-1": Case("features", args("features.batch_size=-1"),
                                          "features.batch_size must be >= 1, got -1"),
    "config/features.image_size=-224": Case("features", args("features.image_size=-224"),
                                            "features.image_size must be >= 32, got -224"),
    "config/train.batch_size=0": Case("train", args("train.batch_size=0"), "train.batch_size must be >= 1, got 0"),
    "config/model.hidden_dim=-5": Case("train", args("model.hidden_dim=-5"), "model.hidden_dim must be >= 1, got -5"),
    "config/missing config file": Case("features", args("--config", "{tmp}/nope.yaml"),
                                       "config file not found: {tmp}/nope.yaml"),
    "config/missing data.annotations": Case("features", args("data.annotations={tmp}/nope.json"),
                                            "Visual7W annotations not found: {tmp}/nope.json"),
    "config/missing images folder": Case("features", args("data.images={tmp}/no_images"),
                                                     "image folder not found: {tmp}/no_images"),
    # ---- checkpoints, given to the eval stage as eval.checkpoint=<dir>
    "checkpoint/weights of another hidden_dim": Case("evaluate", checkpoint(other_weights(hidden_dim=16)),
                                                     "{ckpt} holds weights of another model"),
    "checkpoint/weights of another variant": Case("evaluate", checkpoint(other_weights(variant="blind")),
                                                  "{ckpt} holds weights of another model"),
    "checkpoint/truncated model.safetensors": Case("evaluate", checkpoint(truncate),
                                                   "cannot read {ckpt}/model.safetensors"),
    "checkpoint/torch pickle as model.safetensors": Case("evaluate", checkpoint(pickle_bomb),
                                                         "cannot read {ckpt}/model.safetensors", subprocess=True),
    "checkpoint/missing meta.json": Case("evaluate", checkpoint(remove("meta.json")),
                                         "{ckpt} has no meta.json describing the model"),
    "checkpoint/missing model.safetensors": Case("evaluate", checkpoint(remove("model.safetensors")),
                                                 "no model.safetensors in {ckpt}"),
    "checkpoint/meta.json not JSON": Case("evaluate", checkpoint(overwrite("meta.json", '{"spec": ')),
                                          "{ckpt}/meta.json"),
    "checkpoint/meta.json without a full spec": Case("evaluate", checkpoint(overwrite("meta.json", '{"spec": {}}')),
                                                     "{ckpt}/meta.json"),
    "checkpoint/another run's model (other vocabulary)": Case("evaluate", checkpoint(coherent_other_model(
        vocab_size=5)), "{ckpt}"),
}  # fmt: skip


PARAMS = [pytest.param(case, id=name) for name, case in CASES.items()]


# ------------------------------------------------------------------------------------------------ the runner
def trusted_outputs(stage: str, run: Path) -> list[Path]:
    return sorted(p for pattern in TRUSTED[stage] for p in run.glob(pattern))


def make_env(case: Case, tmp: Path, request: pytest.FixtureRequest) -> Env:
    dataset = request.getfixturevalue("tiny_dataset")
    data = json.loads(annotation_paths(dataset)[case.task].read_text())
    env = Env(tmp=tmp.resolve(), data=copy.deepcopy(data), images=Path(dataset.data.images), run=tmp.resolve() / "run")
    if case.stage == "evaluate":
        overrides = request.getfixturevalue("trained_run")
        trained = Path(next(o for o in overrides if o.startswith("run.dir=")).partition("=")[2])
        # a private copy of the trained run without outputs other tests may have written into it
        shutil.copytree(trained, env.run, ignore=shutil.ignore_patterns("eval", "inspect", "predict"))
        env.base = ["--config", str(CONFIG), *(o for o in overrides if not o.startswith("run.dir=")),
                    f"run.dir={env.run}", "eval.split=test"]  # fmt: skip
    else:
        env.base = ["--config", str(CONFIG), f"data.annotations={env.ann}", f"data.images={env.images}",
                    "data.grounding=null", f"run.dir={env.run}", f"data.task={case.task}", *FAST_FEATURES]  # fmt: skip
    return env


def run_stage(case: Case, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    if case.subprocess:
        p = subprocess.run([sys.executable, f"pipelines/{case.stage}.py", *argv], cwd=REPO, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
        return p.returncode, p.stderr
    capsys.readouterr()
    try:
        code = cli.run(stage_main(case.stage), argv)
    except Exception as e:  # in-process, an exception escaping cli.run is the traceback a user would see
        pytest.fail(f"traceback: {type(e).__name__}: {e}")
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", PARAMS)
def test_hostile_input(
    case: Case,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, Any], None],
) -> None:
    env = make_env(case, tmp_path, request)
    extra = case.prepare(env)
    before = trusted_outputs(case.stage, env.run)
    code, err = run_stage(case, [*env.base, *extra], capsys)
    if case.accepted:
        assert code == 0, err
        assert trusted_outputs(case.stage, env.run), "an accepted input must give the stage's complete output"
        record_property("message", "(accepted)")
        return
    expect = case.expect.format(**env.fields())
    assert code == USER_ERROR, err
    assert "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1, err
    naming = [line.strip() for line in err.splitlines() if expect in line]
    assert naming, f"expected {expect!r} in stderr:\n{err}"
    record_property("message", naming[0])
    assert trusted_outputs(case.stage, env.run) == before, "a failed run must leave nothing a later stage trusts"
    assert not (tmp_path / "pwned").exists(), "the checkpoint ran code"


def test_the_pickle_bomb_is_live(tmp_path: Path) -> None:
    """The refused file above really is dangerous: its pickle calls os.system (read with pickletools, not run)."""
    import pickletools
    import zipfile

    (tmp_path / "ckpt").mkdir()
    pickle_bomb(tmp_path / "ckpt")
    with zipfile.ZipFile(tmp_path / "ckpt" / "model.safetensors") as z:  # torch.save writes a zip holding data.pkl
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    assert ("GLOBAL", f"{os.system.__module__} system") in ops, ops[:20]  # 'posix system' on Linux
    assert any(name == "REDUCE" for name, _ in ops), "the global is called when unpickled"
    assert any(isinstance(arg, str) and arg.startswith("touch ") for _, arg in ops)
