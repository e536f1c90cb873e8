"""Experiment configuration: one YAML file per experiment plus dotted ``section.key=value`` overrides.

The schema lives here as dataclasses (names, types, defaults, limits); the YAML files in ``configs/`` show every
knob with a comment. Loading is strict on purpose: a misspelt key or a value of the wrong type is an error that
names the key and where it came from, because a silently ignored ``train.lrr=1e-3`` wastes a whole training run.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .io import atomic_write_text

DEFAULT_CONFIG = "configs/default.yaml"


def _positive(default: Any) -> Any:
    return field(default=default, metadata={"min": 1})


def _non_negative(default: Any) -> Any:
    return field(default=default, metadata={"min": 0})


@dataclass
class DataConfig:
    task: Literal["telling", "pointing"] = "telling"
    annotations: str = "data/synth7w/dataset_v7w_telling.json"  # dataset_v7w_telling.json
    images: str = "data/synth7w/images"  # folder holding v7w_<image_id>.jpg
    grounding: str | None = "data/synth7w/v7w_telling_answers.json"  # optional grounding boxes


@dataclass
class SynthConfig:
    train_images: int = _positive(1600)
    val_images: int = _positive(200)
    test_images: int = _positive(400)
    page_share: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    min_objects: int = field(default=4, metadata={"min": 1, "max": 8})
    max_objects: int = field(default=6, metadata={"min": 1, "max": 8})
    object_questions: int = field(default=3, metadata={"min": 1, "max": 8})
    min_side: int = field(default=224, metadata={"min": 96})
    max_side: int = field(default=288, metadata={"min": 96})
    jpeg_quality: int = field(default=90, metadata={"min": 1, "max": 95})


@dataclass
class RunConfig:
    dir: str = "runs/default"


@dataclass
class FeaturesConfig:
    backbone: Literal["efficientnet_lite0", "resnet50", "resnet101", "resnet152"] = "efficientnet_lite0"
    image_size: int = field(default=224, metadata={"min": 32})
    hypercolumn: list[int] = field(default_factory=lambda: [4, 8])
    space_to_depth: list[int] = field(default_factory=list)
    dir: str | None = None
    pretrained: bool = True
    weights: str | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool = False
    batch_size: int = _positive(32)
    num_workers: int | Literal["auto"] = field(default="auto", metadata={"min": 0})
    shard_size: int = _positive(1024)
    on_error: Literal["stop", "skip"] = "stop"
    overwrite: bool = False
    max_pixels: int = _positive(89_478_485)


@dataclass
class TextConfig:
    min_freq: int = _positive(1)
    max_len: int = _positive(32)


@dataclass
class ModelConfig:
    variant: Literal["attention", "no_attention", "image_only", "blind", "answer_only"] = "attention"
    rnn: Literal["lstm", "gru"] = "lstm"
    bidirectional: bool = False
    answer_encoder: Literal["rnn", "mean"] = "rnn"
    embed_dim: int = _positive(300)
    word_vectors: str | None = None
    hidden_dim: int = _positive(512)
    attention_dim: int = _positive(512)
    glimpses: int = _positive(2)
    question_glimpses: int = _non_negative(0)
    cell_context: int = _non_negative(0)
    dropout: float = field(default=0.3, metadata={"min": 0.0, "max": 0.9})
    count: bool = True
    attention: Literal["auto", "additive", "bilinear"] = "auto"  # auto: bilinear for telling, additive for pointing


@dataclass
class TrainConfig:
    epochs: int = _positive(60)
    patience: int = _positive(4)
    cooldown: float = field(default=0.2, metadata={"min": 0.0, "max": 1.0})
    batch_size: int = _positive(64)
    batching: Literal["image", "question"] = "image"
    lr: float = field(default=1e-3, metadata={"min_exclusive": 0.0})
    weight_decay: float = _non_negative(0.01)
    warmup: float = field(default=1.0, metadata={"min": 0.0})
    grad_accum: int = _positive(1)
    clip_norm: float = field(default=5.0, metadata={"min_exclusive": 0.0})
    attention_supervision: float = _non_negative(0.0)
    mixed_precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    num_workers: int = _non_negative(0)
    resume: Literal["auto", "never"] = "auto"
    keep_checkpoints: int = _positive(2)
    log_with: Literal["none", "tensorboard"] = "none"


@dataclass
class EvalConfig:
    split: Literal["train", "val", "test"] = "test"
    checkpoint: str = "best"
    batch_size: int = _positive(256)


@dataclass
class InspectConfig:
    split: Literal["train", "val", "test"] = "test"
    n: int = _positive(24)
    qa_ids: list[int] = field(default_factory=list)
    compare: str | None = None


@dataclass
class Config:
    seed: int = _non_negative(0)
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    run: RunConfig = field(default_factory=RunConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    inspect: InspectConfig = field(default_factory=InspectConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.dir)


# --------------------------------------------------------------------------------------------- type checking
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Return (ok, value converted to ``tp``). Only int -> float is converted; bool is never a number."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, out = _coerce(value, arg)
            if ok:
                return True, out
        return False, value
    if origin is Literal:
        return value in typing.get_args(tp), value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        items = [_coerce(v, typing.get_args(tp)[0]) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if tp is type(None):
        return value is None, value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, tp), value


def _check_limits(key: str, value: Any, meta: typing.Mapping[str, Any]) -> str | None:
    if not isinstance(value, (int, float)):
        return None
    if "min" in meta and value < meta["min"]:
        return f"{key} must be >= {meta['min']}, got {value!r}"
    if "max" in meta and value > meta["max"]:
        return f"{key} must be <= {meta['max']}, got {value!r}"
    if "min_exclusive" in meta and value <= meta["min_exclusive"]:
        return f"{key} must be > {meta['min_exclusive']}, got {value!r}"
    return None


# --------------------------------------------------------------------------------------------- loading
def _fields(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _unknown(key: str, name: str, known: Sequence[str], prefix: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    return f"unknown key '{key}'{hint}"


def _set(cfg: Config, dotted: str, value: Any, problems: list[str], source: str) -> None:
    """Set one dotted key on ``cfg`` after checking that it exists and that ``value`` has its type."""
    node: Any = cfg
    parts = dotted.split(".")
    for depth, name in enumerate(parts):
        fields = _fields(node)
        prefix = ".".join(parts[:depth]) + ("." if depth else "")
        if name not in fields:
            problems.append(f"{source}: {_unknown(dotted, name, list(fields), prefix)}")
            return
        hints = typing.get_type_hints(type(node))
        child = getattr(node, name)
        is_last = depth == len(parts) - 1
        if dataclasses.is_dataclass(child):
            if is_last:
                if not isinstance(value, dict):
                    problems.append(f"{source}: '{dotted}' is a section; set its keys, e.g. '{dotted}.<key>'")
                    return
                for k, v in value.items():
                    _set(cfg, f"{dotted}.{k}", v, problems, source)
                return
            node = child
            continue
        if not is_last:
            problems.append(f"{source}: '{'.'.join(parts[: depth + 1])}' is not a section (in '{dotted}')")
            return
        ok, converted = _coerce(value, hints[name])
        if not ok:
            problems.append(
                f"{source}: '{dotted}' must be {_type_name(hints[name])}, got {type(value).__name__} {value!r}"
            )
            return
        limit = _check_limits(dotted, converted, fields[name].metadata) if converted is not None else None
        if limit:
            problems.append(f"{source}: {limit}")
            return
        setattr(node, name, converted)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = _yaml_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 insists on ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader subclass


def parse_override(text: str) -> tuple[str, Any]:
    """``'train.lr=3e-4'`` -> ``('train.lr', 0.0003)``; the value is parsed as a YAML scalar or list."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override '{text}': value is not valid YAML") from None
    return key, value


def _check_consistency(cfg: Config, problems: list[str], source: str) -> None:
    for key in ("hypercolumn", "space_to_depth"):
        hc = getattr(cfg.features, key)
        strides_ok = all(isinstance(v, int) and not isinstance(v, bool) and v in (4, 8, 16) for v in hc)
        if not strides_ok or len(set(hc)) != len(hc):
            problems.append(f"{source}: features.{key} must list distinct strides among 4, 8, 16, got {hc}")
    both = set(cfg.features.hypercolumn) & set(cfg.features.space_to_depth)
    if both:
        problems.append(f"{source}: stride {sorted(both)} is in both features.hypercolumn and features.space_to_depth;"
                        " a stage is appended one way")  # fmt: skip
    if cfg.data.task == "pointing" and cfg.model.attention == "bilinear":
        problems.append(f"{source}: model.attention=bilinear is for telling; pointing needs additive (its attention "
                        "adds each cell's offset from the candidate box inside the tanh)")  # fmt: skip
    s = cfg.synth
    if s.min_objects > s.max_objects:
        problems.append(f"{source}: synth.min_objects ({s.min_objects}) > synth.max_objects ({s.max_objects})")
    if s.min_side > s.max_side:
        problems.append(f"{source}: synth.min_side ({s.min_side}) > synth.max_side ({s.max_side})")


def load_config(path: str | Path | None = DEFAULT_CONFIG, overrides: Sequence[str] = ()) -> Config:
    """Schema defaults <- YAML file <- overrides, each checked; raises ConfigError listing every problem."""
    cfg = Config()
    problems: list[str] = []
    source = "defaults"
    if path is not None:
        source = str(path)
        for key, value in _read_yaml(Path(path)).items():
            _set(cfg, str(key), value, problems, source)
    for text in overrides:
        key, value = parse_override(text)
        _set(cfg, key, value, problems, "command line")
    _check_consistency(cfg, problems, source)
    if problems:
        raise ConfigError(f"invalid configuration ({source}):", problems)
    return cfg


def save_config(cfg: Config, path: str | Path | None = None) -> Path:
    """Write the resolved config (defaults + file + overrides) so a run can be reproduced from its folder."""
    path = Path(path) if path is not None else cfg.run_dir / "config.yaml"
    text = "# resolved configuration of this run (defaults + config file + overrides)\n"
    text += yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    return atomic_write_text(path, text)


def flat_keys(cfg: Config | None = None) -> list[str]:
    """Every dotted key of the schema, e.g. ``['seed', 'data.annotations', ...]``."""

    def walk(node: Any, prefix: str) -> list[str]:
        keys: list[str] = []
        for f in dataclasses.fields(node):
            child = getattr(node, f.name)
            keys += walk(child, f"{prefix}{f.name}.") if dataclasses.is_dataclass(child) else [prefix + f.name]
        return keys

    return walk(cfg or Config(), "")
