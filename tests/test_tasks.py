"""The tasks: what each one decides for the rest of the code (the model it builds, what a choice is)."""

from __future__ import annotations

import pytest
from conftest import build_model, model_spec

from vqa.common.errors import ConfigError, VQAError
from vqa.config import load_config
from vqa.data.tasks import task_of
from vqa.model.grid import BoxCandidates
from vqa.run import Run


def test_pointing_refuses_bilinear_attention() -> None:
    with pytest.raises(ConfigError, match="pointing needs additive"):
        build_model(model_spec(20, (16, 3, 4), task="pointing", attention="bilinear"))
    with pytest.raises(ConfigError, match="pointing needs additive"):
        Run(load_config(None, ["data.task=pointing", "model.attention=bilinear"]))  # before any work starts


def test_auto_attention_is_bilinear_for_telling_and_additive_for_pointing() -> None:
    def spec(*overrides: str):
        cfg = load_config(None, list(overrides))
        return task_of(cfg.data.task).model_spec(cfg, 20, (16, 3, 4))

    assert spec().attention == "bilinear" and spec("data.task=pointing").attention == "additive"
    assert spec("model.attention=additive").attention == "additive"
    assert spec("data.task=pointing", "model.question_glimpses=2").question_glimpses == 0, "telling only"


def test_each_task_builds_its_candidates() -> None:
    pointing = build_model(model_spec(20, (16, 3, 4), task="pointing", embed_dim=8, hidden_dim=12))
    telling = build_model(model_spec(20, (16, 3, 4), embed_dim=8, hidden_dim=12))
    assert isinstance(pointing.candidates, BoxCandidates) and not isinstance(telling.candidates, BoxCandidates)


def test_a_choice_as_typed() -> None:
    assert task_of("telling").parse_choice("Red.") == "Red."
    assert task_of("pointing").parse_choice("10,20,50,40") == (10, 20, 50, 40)
    with pytest.raises(VQAError, match="boxes 'x,y,width,height'"):
        task_of("pointing").parse_choice("Red.")


def test_an_unknown_task_is_named() -> None:
    with pytest.raises(ConfigError, match=r"data.task must be one of telling, pointing, got 'counting'"):
        task_of("counting")
