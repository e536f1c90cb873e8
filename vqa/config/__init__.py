"""Experiment configuration: ``configs/base.yaml``, an experiment file's ``base:`` chain, dotted overrides.

The schema lives here as dataclasses (names, types, limits) and nowhere holds a default: every default, with a
comment saying what the key does, is in ``vqa/base.yaml`` (package data; ``configs/base.yaml`` in a checkout links
to it), which the loader always reads first. An experiment file names the file it builds on (``base: base.yaml``,
relative to itself; chains allowed; a file without ``base:`` builds on base.yaml alone) and sets only what
differs; ``section.key=value`` overrides come last. Loading is strict on purpose: a misspelt key or a value of the
wrong type is an error that names the key and where it came from, because a silently ignored ``train.lrr=1e-3``
wastes a whole training run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ..common.errors import ConfigError
from ..common.files import atomic_write_text
from .files import BASE_KEY, config_chain, parse_override, read_yaml
from .types import UNSET, leaves, set_key

__all__ = ["BASE_CONFIG", "DEFAULT_CONFIG", "Config", "flat_keys", "load_config", "parse_override", "save_config"]

DEFAULT_CONFIG = "configs/default.yaml"
# every key's default: package data, so that an installed wheel loads configs too (configs/base.yaml links to it)
BASE_CONFIG = Path(str(resources.files("vqa.config") / "base.yaml"))


def _key(**limits: Any) -> Any:
    """A key of the schema: its default comes from base.yaml; ``limits``: min, max, min_exclusive."""
    return field(default=UNSET, metadata=limits)


@dataclass
class DataConfig:
    task: Literal["telling", "pointing"] = _key()
    annotations: str = _key()  # dataset_v7w_telling.json (or _pointing)
    images: str = _key()  # folder holding v7w_<image_id>.jpg
    grounding: str | None = _key()  # optional grounding boxes


@dataclass
class SynthConfig:
    train_images: int = _key(min=1)
    val_images: int = _key(min=1)
    test_images: int = _key(min=1)
    page_share: float = _key(min=0.0, max=1.0)
    min_objects: int = _key(min=1, max=8)
    max_objects: int = _key(min=1, max=8)
    object_questions: int = _key(min=1, max=8)
    min_side: int = _key(min=96)
    max_side: int = _key(min=96)
    jpeg_quality: int = _key(min=1, max=95)


@dataclass
class RunConfig:
    dir: str = _key()


@dataclass
class FeaturesConfig:
    backbone: Literal["efficientnet_lite0", "resnet50", "resnet101", "resnet152"] = _key()
    image_size: int = _key(min=32)
    hypercolumn: list[int] = field(default=UNSET)
    space_to_depth: list[int] = field(default=UNSET)
    dir: str | None = _key()
    pretrained: bool = _key()
    weights: str | None = _key()
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _key()
    compile: bool = _key()
    batch_size: int = _key(min=1)
    num_workers: int | Literal["auto"] = _key(min=0)
    shard_size: int = _key(min=1)
    on_error: Literal["stop", "skip"] = _key()
    overwrite: bool = _key()
    max_pixels: int = _key(min=1)


@dataclass
class TextConfig:
    min_freq: int = _key(min=1)
    max_len: int = _key(min=1)


@dataclass
class ModelConfig:
    variant: Literal["attention", "no_attention", "image_only", "blind", "answer_only"] = _key()
    rnn: Literal["lstm", "gru"] = _key()
    bidirectional: bool = _key()
    answer_encoder: Literal["rnn", "mean"] = _key()
    embed_dim: int = _key(min=1)
    word_vectors: str | None = _key()
    hidden_dim: int = _key(min=1)
    attention_dim: int = _key(min=1)
    glimpses: int = _key(min=1)
    question_glimpses: int = _key(min=0)
    cell_context: int = _key(min=0)
    dropout: float = _key(min=0.0, max=0.9)
    count: bool = _key()
    evidence: bool = _key()  # word evidence (vqa/model/evidence.py): score head, attending variants; boxes too
    attention: Literal["auto", "additive", "bilinear"] = _key()  # auto: bilinear for telling, additive for pointing
    head: Literal["score", "decoder"] = _key()  # score: the scorer MLP | decoder: the attention LSTM (telling)


@dataclass
class TrainConfig:
    epochs: int = _key(min=1)
    patience: int = _key(min=1)
    cooldown: float = _key(min=0.0, max=1.0)
    batch_size: int = _key(min=1)
    batching: Literal["image", "question"] = _key()
    lr: float = _key(min_exclusive=0.0)
    weight_decay: float = _key(min=0)
    warmup: float = _key(min=0.0)
    grad_accum: int = _key(min=1)
    clip_norm: float = _key(min_exclusive=0.0)
    attention_supervision: float = _key(min=0)
    matching: float = _key(min=0)  # weight of the image-text matching loss of the word evidence
    ranking: float = _key(min=0)  # decoder head: weight of the cross-entropy over the candidates' likelihoods
    mixed_precision: Literal["auto", "fp32", "bf16", "fp16"] = _key()
    num_workers: int = _key(min=0)
    resume: Literal["auto", "never"] = _key()
    keep_checkpoints: int = _key(min=1)
    log_with: Literal["none", "tensorboard"] = _key()


@dataclass
class EvalConfig:
    split: Literal["train", "val", "test"] = _key()
    checkpoint: str = _key()
    batch_size: int = _key(min=1)
    mode: Literal["mc", "open"] = _key()
    topk: int = _key(min=1)


@dataclass
class InspectConfig:
    split: Literal["train", "val", "test"] = _key()
    n: int = _key(min=1)
    qa_ids: list[int] = field(default=UNSET)
    compare: str | None = _key()


@dataclass
class Config:
    """The schema. ``Config()`` holds no values (every key ``<unset>``): ``load_config`` fills it from base.yaml."""

    seed: int = _key(min=0)
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


# --------------------------------------------------------------------------------------------- loading
def _merge(cfg: Config, data: dict[str, Any], source: str, problems: list[str]) -> None:
    for key, value in data.items():
        set_key(cfg, str(key), value, problems, source)


def _load_defaults(cfg: Config) -> None:
    """base.yaml onto the empty schema: it must set every key, and it builds on nothing."""
    root = Path(BASE_CONFIG)
    data = read_yaml(root)
    problems: list[str] = []
    if data.pop(BASE_KEY, None) is not None:
        problems.append(f"{root}: '{BASE_KEY}' is not allowed here: this file is the root of every chain")
    _merge(cfg, data, str(root), problems)
    problems += [f"{root}: no value for '{key}' (this file must hold the default of every key)"
                 for key, value in leaves(cfg) if value is UNSET]  # fmt: skip
    if problems:
        raise ConfigError(f"invalid defaults ({root}):", problems)


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
    s = cfg.synth
    if s.min_objects > s.max_objects:
        problems.append(f"{source}: synth.min_objects ({s.min_objects}) > synth.max_objects ({s.max_objects})")
    if s.min_side > s.max_side:
        problems.append(f"{source}: synth.min_side ({s.min_side}) > synth.max_side ({s.max_side})")


def load_config(path: str | Path | None = DEFAULT_CONFIG, overrides: Sequence[str] = ()) -> Config:
    """base.yaml <- the files ``path``'s ``base:`` chain names, root first <- ``path`` <- ``overrides``.

    ``path=None``: base.yaml and the overrides. Every source is checked key by key; raises ConfigError listing
    every problem, each naming its file (or the command line).
    """
    cfg = Config()
    _load_defaults(cfg)
    problems: list[str] = []
    source = str(BASE_CONFIG) if path is None else str(path)
    if path is not None:
        for file, data in config_chain(Path(path), Path(BASE_CONFIG)):
            _merge(cfg, data, str(file), problems)
    for text in overrides:
        key, value = parse_override(text)
        set_key(cfg, key, value, problems, "command line")
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
    return [key for key, _ in leaves(cfg or Config())]
