"""The tasks, by the name ``data.task`` gives: one is chosen once per run and asked about every difference."""

from __future__ import annotations

from ...common.errors import ConfigError
from .base import Task
from .pointing import Pointing
from .telling import Telling

TASKS: dict[str, type[Task]] = {"telling": Telling, "pointing": Pointing}


def task_of(name: str) -> Task:
    """The task named ``name`` (``data.task``)."""
    if name not in TASKS:
        raise ConfigError(f"data.task must be one of {', '.join(TASKS)}, got {name!r}")
    return TASKS[name]()


__all__ = ["TASKS", "Pointing", "Task", "Telling", "task_of"]
