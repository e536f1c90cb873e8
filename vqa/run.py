"""One experiment as a stage sees it: the config, the run folder's layout, and what the stage loads, once.

Every stage starts from a ``Run``: the task (``data.task``) is chosen here, the folder layout is spelled here only,
and the dataset, grounding, feature reader and trained model are loaded on first use and handed down, so a stage
that needs them twice (``make inspect``: the report and the explorer) reads each once.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from .checkpoint import Trained, load_trained
from .common.errors import ConfigError
from .data.boxes import Box
from .data.tasks import Task, task_of
from .data.visual7w import Visual7W
from .features.store import FeatureReader, features_dir


class Run:
    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.task: Task = task_of(cfg.data.task)
        self.dir = Path(cfg.run.dir)
        problem = self.task.check_model(cfg.model)
        if problem:
            raise ConfigError(problem)

    # ---------------------------------------------------------------------------------------------- the layout
    @property
    def features_dir(self) -> Path:
        """The feature store: ``features.dir`` when set (shared between runs), else ``<run.dir>/features``."""
        return features_dir(self.cfg)

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def tokenizer_dir(self) -> Path:
        return self.dir / "tokenizer"

    @property
    def qa_dir(self) -> Path:
        return self.dir / "qa"

    @property
    def train_log(self) -> Path:
        return self.dir / "train_log.jsonl"

    @property
    def report_dir(self) -> Path:
        return self.dir / "inspect"

    def eval_dir(self, split: str) -> Path:
        return self.dir / "eval" / split

    def open_dir(self, split: str) -> Path:
        """Open-ended answers of ``split`` (``eval.mode=open``), beside its multiple-choice folder."""
        return self.dir / "eval" / f"{split}_open"

    def baseline_dir(self, suffix: str) -> Path:
        """A baseline run of the same experiment (``make baselines``): ``<run.dir>_<suffix>``."""
        return Path(f"{self.dir}_{suffix}")

    # ---------------------------------------------------------------------------------------------- loaded once
    @cached_property
    def dataset(self) -> Visual7W:
        return self.task.load(self.cfg.data.annotations, self.cfg.data.images)

    @cached_property
    def grounding(self) -> dict[int, list[Box]] | None:
        return self.task.grounding(self.cfg.data.grounding, self.dataset)

    @cached_property
    def reader(self) -> FeatureReader:
        return FeatureReader(self.features_dir)

    @cached_property
    def trained(self) -> Trained:
        """``eval.checkpoint`` with the run's tokenizer."""
        return load_trained(self.checkpoints_dir, self.cfg.eval.checkpoint, self.tokenizer_dir, self.task.name)


def as_run(run_or_cfg: Run | Any) -> Run:
    """A ``Run`` from either a run or its config (the library's entry points take both)."""
    return run_or_cfg if isinstance(run_or_cfg, Run) else Run(run_or_cfg)
