from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vqa.common.errors import ConfigError
from vqa.config import Config, flat_keys, load_config, parse_override, save_config
from vqa.model.spec import ModelSpec
from vqa.run import Run

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "configs" / "base.yaml"
EXPERIMENTS = sorted(p.name for p in (REPO / "configs").glob("*.yaml") if p.name != "base.yaml")
OLD = "2f99299"  # the last commit whose configs repeated every key
NEW_DEFAULTS = {"features.image_size": 448, "model.question_glimpses": 1, "model.cell_context": 5,
                "synth.train_images": 3200, "synth.val_images": 400, "synth.test_images": 800,
                "synth.page_share": 0.5, "train.batch_size": 32, "train.lr": 2.0e-3, "model.evidence": True,
                "train.matching": 1.0}  # fmt: skip
# Keys an experiment changed on purpose since OLD: the demo (and pointing, which builds on it) became a smaller world
# with an epoch ceiling, to fit a coffee break; configs/full*.yaml are new and keep the whole world.
DEMO = {"synth.train_images": 2000, "synth.val_images": 200, "synth.test_images": 400, "train.epochs": 12}
# The Visual7W configs keep their own batch and LR where base.yaml's rose (measured on the synthetic world only).
VISUAL7W = {"train.batch_size": 128, "train.lr": 1.0e-3}
# Pointing keeps a 3 x 3 cell context where base.yaml's grew to 5 x 5 (measured on the synthetic world).
POINTING = {"model.cell_context": 3}
CHANGED_SINCE_OLD = {"default.yaml": DEMO, "pointing.yaml": {**DEMO, **POINTING}, "visual7w.yaml": VISUAL7W,
                     "visual7w_pointing.yaml": {**VISUAL7W, **POINTING}}  # fmt: skip
NEW_FILES = {"full.yaml", "full_pointing.yaml"}
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
    "features.image_size": ("224", 224, "16", "features.image_size must be >= 32, got 16"),
    "train.epochs": ("3", 3, "2.5", "'train.epochs' must be int, got float 2.5"),
    "train.batch_size": ("64", 64, "0", "train.batch_size must be >= 1, got 0"),
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


def shown_keys(raw: dict[str, Any]) -> list[str]:
    """The dotted keys a YAML mapping sets (``base`` excluded)."""
    return [f"{s}.{k}" for s, v in raw.items() if isinstance(v, dict) for k in v] + [
        k for k, v in raw.items() if not isinstance(v, dict) and k != "base"
    ]


def commented(path: Path) -> bool:
    leaf_lines = [ln for ln in path.read_text().splitlines() if re.match(r"^\s*\w+:\s*[^\s#]", ln)]
    return bool(leaf_lines) and all("#" in ln for ln in leaf_lines)


def test_base_shows_every_knob_with_a_comment() -> None:
    raw = yaml.safe_load(BASE.read_text())
    assert sorted(shown_keys(raw)) == sorted(flat_keys()), "every schema key must have its default in base.yaml"
    assert "base" not in raw
    assert commented(BASE), "every knob needs a comment"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_files_set_only_what_differs_from_their_base(name: str) -> None:
    """An experiment file names its base and sets only keys whose value differs from what that base gives, each
    with a comment: the file shows what the experiment changes, base.yaml the rest."""
    path = REPO / "configs" / name
    raw = yaml.safe_load(path.read_text())
    parent = load_config(path.parent / raw["base"])
    cfg = load_config(path)
    assert shown_keys(raw), "an experiment sets at least its run.dir"
    same = [k for k in shown_keys(raw) if get(cfg, k) == get(parent, k)]
    assert not same, f"{name} repeats its base's values: {same}"
    assert commented(path), "every knob needs a comment"


def test_each_experiment_has_its_own_run_dir() -> None:
    dirs = [load_config(REPO / "configs" / n).run.dir for n in EXPERIMENTS]
    assert len(set(dirs)) == len(dirs) and load_config(None).run.dir not in dirs


def old_config(name: str, tmp_path: Path) -> Config:
    """configs/<name> as it was at OLD, when every file repeated every key, loaded by today's loader."""
    try:
        text = subprocess.run(["git", "show", f"{OLD}:configs/{name}"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"needs the git history (commit {OLD})")
    path = tmp_path / name
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if n not in NEW_FILES])
def test_experiments_resolve_as_before_but_for_the_new_defaults(name: str, tmp_path: Path) -> None:
    """The only-what-differs files resolve to the same config as the full files they replaced, except the keys
    whose default changed (which every experiment now takes from base.yaml)."""
    expected, defaults = old_config(name, tmp_path), load_config(None)
    assert {k: get(defaults, k) for k in NEW_DEFAULTS} == NEW_DEFAULTS
    for key, value in {**NEW_DEFAULTS, **CHANGED_SINCE_OLD.get(name, {})}.items():
        section, leaf = key.split(".")
        setattr(getattr(expected, section), leaf, value)
    assert load_config(REPO / "configs" / name).to_dict() == expected.to_dict()


@pytest.mark.parametrize("key", sorted(CONTRACT))
def test_contract_key_override_reaches_the_config(key: str) -> None:
    """``key=value`` on the command line lands on that key, with its type, and touches no other key: the pipelines
    and the README's commands rely on exactly these overrides."""
    text, expected, _, _ = CONTRACT[key]
    cfg, default = load_config(None, [f"{key}={text}"]), load_config(None)
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
    """The real-data config switches to ResNet-152 (file over defaults); an override on top changes only the key
    it names (command line over file), e.g. a quick 224 px smoke run of the Visual7W setup."""
    path = REPO / "configs" / "visual7w.yaml"
    default, cfg = load_config(None), load_config(path)
    assert (default.features.backbone, default.features.image_size) == ("efficientnet_lite0", 448)
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
        Run(load_config(None, ["data.task=pointing", "model.attention=bilinear"]))  # the task says, once chosen


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, [f"run.dir={tmp_path}/run", "train.lr=2e-4", "seed=3"])
    path = save_config(cfg)
    assert path == tmp_path / "run" / "config.yaml"
    again = load_config(path)
    assert again == cfg and isinstance(again, Config)
    assert not list(path.parent.glob(".*.tmp")), "atomic write must not leave temp files"


# --------------------------------------------------------------------------------------------- base: chains
def files(tmp_path: Path, **texts: str) -> dict[str, Path]:
    """Write ``name=text`` files (``sub__b`` -> ``sub/b.yaml``) under ``tmp_path``."""
    paths = {}
    for name, text in texts.items():
        paths[name] = tmp_path / (name.replace("__", "/") + ".yaml")
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_text(text)
    return paths


def test_the_schema_holds_no_defaults() -> None:
    assert all(repr(get(Config(), k)) == "<unset>" for k in flat_keys())


def test_a_file_is_merged_deep_over_base_yaml(tmp_path: Path) -> None:
    """A file without ``base:`` still starts from base.yaml; setting one key of a section keeps the others."""
    cfg, default = load_config(write(tmp_path, "model:\n  count: false\n")), load_config(None)
    assert [k for k in flat_keys() if get(cfg, k) != get(default, k)] == ["model.count"]
    named = load_config(files(tmp_path, a=f"base: {BASE}\nmodel:\n  count: false\n")["a"])
    assert named == cfg


def test_a_chain_merges_root_first_each_base_relative_to_its_file(tmp_path: Path) -> None:
    p = files(tmp_path, a="base: sub/b.yaml\ntrain: {lr: 0.5}\n",
              sub__b="base: c.yaml\ntrain: {lr: 0.1, epochs: 3}\nmodel: {dropout: 0.2}\n",
              sub__c="model: {dropout: 0.0, glimpses: 3}\nfeatures: {hypercolumn: []}\n")  # fmt: skip
    cfg, default = load_config(p["a"], ["train.epochs=4"]), load_config(None)
    changed = {k: get(cfg, k) for k in flat_keys() if get(cfg, k) != get(default, k)}
    assert changed == {"features.hypercolumn": [], "model.glimpses": 3, "model.dropout": 0.2, "train.epochs": 4,
                       "train.lr": 0.5}  # fmt: skip


def test_the_shipped_chain_and_the_resolved_config(tmp_path: Path) -> None:
    """visual7w_pointing.yaml -> visual7w.yaml -> base.yaml; the saved config is the merged one, every key, no
    ``base``, and loads back to the same config."""
    cfg = load_config(REPO / "configs" / "visual7w_pointing.yaml", [f"run.dir={tmp_path}/run"])
    assert (cfg.data.task, cfg.features.backbone, cfg.model.word_vectors) == ("pointing", "resnet152", "glove-6b-50d")
    saved = yaml.safe_load(save_config(cfg).read_text())
    assert "base" not in saved and sorted(shown_keys(saved)) == sorted(flat_keys())
    assert load_config(tmp_path / "run" / "config.yaml") == cfg


def test_a_key_missing_from_base_yaml_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "\n".join(ln for ln in BASE.read_text().splitlines() if not ln.strip().startswith("cell_context:"))
    monkeypatch.setattr("vqa.config.BASE_CONFIG", write(tmp_path, text))
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "configs" / "visual7w.yaml")
    assert e.value.problems == [f"{tmp_path / 'exp.yaml'}: no value for 'model.cell_context' (this file must hold "
                                "the default of every key)"]  # fmt: skip


def test_base_yaml_builds_on_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vqa.config.BASE_CONFIG", write(tmp_path, f"base: other.yaml\n{BASE.read_text()}"))
    with pytest.raises(ConfigError, match="'base' is not allowed here: this file is the root of every chain"):
        load_config(None)


def test_a_base_cycle_names_the_files(tmp_path: Path) -> None:
    p = files(tmp_path, a="base: b.yaml\n", b="base: sub/c.yaml\n", sub__c="base: ../a.yaml\n")
    with pytest.raises(ConfigError) as e:
        load_config(p["a"])
    cycle = f"{p['a']} -> {p['b']} -> {p['sub__c']} -> {tmp_path}/sub/../a.yaml"
    assert str(e.value) == f"'base:' chain is a cycle: {cycle}"
    with pytest.raises(ConfigError, match=r"cycle: .*self\.yaml -> .*self\.yaml$"):
        load_config(files(tmp_path, self="base: self.yaml\n")["self"])


def test_unknown_key_or_type_change_in_a_base_names_that_file(tmp_path: Path) -> None:
    p = files(tmp_path, a="base: b.yaml\ntrain: {lr: 0.5}\n", b="train:\n  lrr: 0.1\n  epochs: many\n")
    with pytest.raises(ConfigError) as e:
        load_config(p["a"])
    assert e.value.problems == [f"{p['b']}: unknown key 'train.lrr' (did you mean 'train.lr'?)",
                                f"{p['b']}: 'train.epochs' must be int, got str 'many'"]  # fmt: skip


def test_a_missing_or_malformed_base_is_named(tmp_path: Path) -> None:
    p = files(tmp_path, a="base: nope.yaml\n", b="base: [x]\n")
    with pytest.raises(ConfigError, match=rf"config file not found: .*nope\.yaml \(the base of {p['a']}\)"):
        load_config(p["a"])
    with pytest.raises(ConfigError, match=r"b\.yaml: 'base' must name a YAML file .*got \['x'\]"):
        load_config(p["b"])
    with pytest.raises(ConfigError, match=r"command line: unknown key 'base'"):
        load_config(None, ["base=x.yaml"])


def test_cell_context_must_fit_the_grouped_conv() -> None:
    """The model's own rule (``model/spec.py``), refused when its spec is built: before training or eval starts."""

    def spec(*overrides: str) -> ModelSpec:
        return ModelSpec.from_config(load_config(None, overrides), 20, (16, 3, 4), "telling", "bilinear", 1)

    assert spec("model.cell_context=0", "model.attention_dim=20").attention_dim == 20
    with pytest.raises(ConfigError, match=r"model.cell_context=5 needs model.attention_dim divisible by 8 .*got 20"):
        spec("model.attention_dim=20")
    with pytest.raises(ConfigError, match=r"model.cell_context must be 0 \(off\) or odd .*got 4"):
        spec("model.cell_context=4")
