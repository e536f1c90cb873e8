"""``ModelSpec`` (``vqa/model/spec.py``): settings from the config, saved and read back, older layouts refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import build_model, model_spec

from vqa.checkpoint import load_model, save_best
from vqa.common.errors import ConfigError
from vqa.model import LAYOUT, ModelSpec

RETRAIN = 'make train ARGS="train.resume=never"'


def old_layout_spec() -> dict:
    """A spec as the single-module model saved it: every field of its time, no ``layout``."""
    spec = model_spec(20, (16, 3, 4), embed_dim=8, hidden_dim=12).to_dict()
    del spec["layout"]
    spec["grid"] = list(spec["grid"])  # as JSON gives it back
    return spec


def test_a_saved_spec_reads_back_as_itself() -> None:
    spec = model_spec(20, (16, 3, 4), variant="image_only", count=True, question_glimpses=2, cell_context=3)
    assert spec.to_dict()["layout"] == LAYOUT
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_an_older_layout_is_refused_with_how_to_retrain() -> None:
    with pytest.raises(ConfigError, match="older model layout") as e:
        ModelSpec.from_dict(old_layout_spec())
    assert RETRAIN in str(e.value)
    with pytest.raises(ConfigError, match="model layout 3") as e:
        ModelSpec.from_dict({**old_layout_spec(), "layout": 3})
    assert RETRAIN in str(e.value)


@pytest.mark.parametrize(("spec", "problem"), [
    ({"vocab_size": 20}, "no grid"),
    ([1, 2], "a mapping was expected, got list"),
    ({**old_layout_spec(), "layout": LAYOUT, "heads": 4}, "fields this code does not know: heads"),
    ({**old_layout_spec(), "layout": LAYOUT, "grid": 7}, "does not describe a model"),
])  # fmt: skip
def test_a_spec_that_describes_no_model_is_refused(spec: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        ModelSpec.from_dict(spec)


def test_loading_a_checkpoint_of_the_older_layout_says_how_to_retrain(tmp_path: Path) -> None:
    save_best(build_model(model_spec(20, (16, 3, 4), embed_dim=8, hidden_dim=12)), tmp_path, {"epoch": 1})
    best = tmp_path / "best"
    load_model(best)  # this layout loads
    (best / "meta.json").write_text(json.dumps({"epoch": 1, "spec": old_layout_spec()}))
    with pytest.raises(ConfigError, match="older model layout") as e:
        load_model(best)
    assert str(best / "meta.json") in str(e.value) and RETRAIN in str(e.value)
