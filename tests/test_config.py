from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from vqa.config import Config, flat_keys, load_config, parse_override, save_config
from vqa.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
# The keys the README tells users to set on the command line: key -> (override text, the value the
# Config must then hold, a wrong override, the exact problem line it must give). Every value differs from the default.
CONTRACT = {
    "data.annotations": ("/v7w/dataset_v7w_telling.json", "/v7w/dataset_v7w_telling.json", "[a, b]",
                         "'data.annotations' must be str, got list ['a', 'b']"),
    "data.images": ("/v7w/images", "/v7w/images", "{dir: x}", "'data.images' must be str, got dict {'dir': 'x'}"),
    "data.grounding": ("null", None, "7", "'data.grounding' must be str | null, got int 7"),
    "data.task": ("pointing", "pointing", "which", "'data.task' must be 'telling' | 'pointing', got str 'which'"),
    "features.dir": ("/shared/store", "/shared/store", "[a]", "'features.dir' must be str | null, got list ['a']"),
    "run.dir": ("runs/exp 1", "runs/exp 1", "[runs]", "'run.dir' must be str, got list ['runs']"),
    "features.backbone": ("resnet152", "resnet152", "resnet18",
                          "'features.backbone' must be 'efficientnet_lite0' | 'resnet50' | 'resnet101' | 'resnet152',"
                          " got str 'resnet18'"),
    "features.image_size": ("448", 448, "16", "features.image_size must be >= 32, got 16"),
    "train.epochs": ("3", 3, "2.5", "'train.epochs' must be int, got float 2.5"),
    "train.batch_size": ("16", 16, "0", "train.batch_size must be >= 1, got 0"),
    "train.lr": ("5e-4", 5e-4, "0", "train.lr must be > 0.0, got 0.0"),
    "seed": ("11", 11, "-1", "seed must be >= 0, got -1"),
    "model.variant": ("image_only", "image_only", "Attention",
                      "'model.variant' must be 'attention' | 'no_attention' | 'image_only' | 'blind' | 'answer_only', "
                      "got str 'Attention'"),
}  # fmt: skip


def get(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for name in dotted.split("."):
        node = getattr(node, name)
    return node


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_load_and_show_every_knob(name: str) -> None:
    path = REPO / "configs" / name
    load_config(path)
    raw = yaml.safe_load(path.read_text())
    shown = [f"{s}.{k}" for s, v in raw.items() if isinstance(v, dict) for k in v] + [
        k for k, v in raw.items() if not isinstance(v, dict)
    ]
    assert sorted(shown) == sorted(flat_keys()), "every schema key must appear in the shipped config"
    leaf_lines = [ln for ln in path.read_text().splitlines() if re.match(r"^\s*\w+:\s*[^\s#]", ln)]
    assert leaf_lines and all("#" in ln for ln in leaf_lines), "every knob needs a comment"


@pytest.mark.parametrize("key", sorted(CONTRACT))
def test_contract_key_override_reaches_the_config(key: str) -> None:
    """``key=value`` on the command line lands on that key, with its type, and touches no other key: the pipelines
    and the README's commands rely on exactly these overrides."""
    text, expected, _, _ = CONTRACT[key]
    cfg, default = load_config(None, [f"{key}={text}"]), Config()
    assert get(default, key) != expected, "pick a value that differs from the default"
    assert get(cfg, key) == expected and type(get(cfg, key)) is type(expected)
    assert [k for k in flat_keys() if get(cfg, k) != get(default, k)] == [key]


@pytest.mark.parametrize("key", sorted(CONTRACT))
def test_contract_key_with_a_bad_value_is_refused_by_name(key: str) -> None:
    """A wrong type or an out-of-range value for a contract key stops the run before any work, with one line that
    names the key, says it came from the command line, and shows what it expected and what it got."""
    _, _, bad, problem = CONTRACT[key]
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}={bad}"])
    assert e.value.problems == [f"command line: {problem}"]


def test_the_command_line_beats_the_file_which_beats_the_defaults() -> None:
    """The real-data config switches to ResNet-152 at 448 px (file over defaults); an override on top changes only
    the key it names (command line over file), e.g. a quick 224 px smoke run of the Visual7W setup."""
    path = REPO / "configs" / "visual7w.yaml"
    default, cfg = Config(), load_config(path)
    assert (default.features.backbone, default.features.image_size) == ("efficientnet_lite0", 224)
    assert (cfg.features.backbone, cfg.features.image_size) == ("resnet152", 448)
    smoke = load_config(path, ["features.image_size=224", "run.dir=runs/smoke"])
    assert (smoke.features.backbone, smoke.features.image_size, smoke.run.dir) == ("resnet152", 224, "runs/smoke")
    assert [k for k in flat_keys() if get(smoke, k) != get(cfg, k)] == ["run.dir", "features.image_size"]


def test_overrides_are_yaml_scalars() -> None:
    cfg = load_config(None, ["train.lr=3e-4", "train.epochs=2", "data.grounding=null", "model.variant=blind"])
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 2 and cfg.data.grounding is None and cfg.model.variant == "blind"
    assert parse_override("seed=7") == ("seed", 7)
    assert parse_override("data.grounding=") == ("data.grounding", None)


def test_int_is_accepted_for_float_but_bool_is_not_int() -> None:
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"'train.epochs' must be int, got bool True"):
        load_config(None, ["train.epochs=true"])


def test_unknown_key_names_key_file_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and "unknown key 'train.lrr'" in msg and "did you mean 'train.lr'" in msg


def test_unknown_section_and_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"command line: unknown key 'trian.lr' \(did you mean 'train'\?\)"):
        load_config(None, ["trian.lr=1"])


def test_type_change_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  batch_size: big\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(path) in str(e.value) and "'train.batch_size' must be int, got str 'big'" in str(e.value)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.epochs=0", "model.variant=transformer", "nope=1"])
    assert len(e.value.problems) == 3
    assert any("train.epochs must be >= 1, got 0" in p for p in e.value.problems)
    variants = "'attention' | 'no_attention' | 'image_only' | 'blind'"
    assert any(f"'model.variant' must be {variants}" in p for p in e.value.problems)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("train: [1, 2\n", r"not valid YAML \(line 2"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("train: 3\n", "'train' is a section"),
        ("seed:\n  x: 1\n", "'seed' must be int"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_missing_file_and_bad_override() -> None:
    with pytest.raises(ConfigError, match=r"config file not found: nowhere\.yaml"):
        load_config("nowhere.yaml")
    with pytest.raises(ConfigError, match=r"must look like section\.key=value"):
        load_config(None, ["train.lr"])


def test_inconsistent_ranges() -> None:
    with pytest.raises(ConfigError, match=r"synth.min_objects \(4\) > synth.max_objects \(3\)"):
        load_config(None, ["synth.min_objects=4", "synth.max_objects=3"])
    with pytest.raises(ConfigError, match=r"hypercolumn must list distinct strides among 4, 8, 16, got \[4, 3\]"):
        load_config(None, ["features.hypercolumn=[4, 3]"])
    assert load_config(None, ["features.hypercolumn=[8, 4]"]).features.hypercolumn == [8, 4]
    with pytest.raises(ConfigError, match=r"model.attention=bilinear is for telling; pointing needs additive"):
        load_config(None, ["data.task=pointing", "model.attention=bilinear"])


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, [f"run.dir={tmp_path}/run", "train.lr=2e-4", "seed=3"])
    path = save_config(cfg)
    assert path == tmp_path / "run" / "config.yaml"
    again = load_config(path)
    assert again == cfg and isinstance(again, Config)
    assert not list(path.parent.glob(".*.tmp")), "atomic write must not leave temp files"
