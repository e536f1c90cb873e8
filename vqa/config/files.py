"""Reading experiment YAML files: the strict reader, ``section.key=value`` overrides and ``base:`` chains.

An experiment file may name the file it builds on (``base: visual7w.yaml``, relative to the file that names it);
that file may name another, and so on. ``config_chain`` returns the files root first, so that each one is merged
over the one it names; a cycle is an error naming the files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..common.errors import ConfigError

BASE_KEY = "base"


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


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader subclass


def read_yaml(path: Path, named_by: Path | None = None) -> dict[str, Any]:
    """The mapping in ``path``; ``named_by`` is the file whose ``base:`` names it (for the error message)."""
    if not path.is_file():
        why = f" (the base of {named_by})" if named_by is not None else ""
        raise ConfigError(f"config file not found: {path}{why}")
    try:
        data = yaml_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def config_chain(path: Path, root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """``[(file, its keys without 'base'), ...]``: ``path`` and the files its ``base:`` chain names, root first.

    The chain stops at ``root`` (the defaults, which the caller merges first anyway) or at a file without ``base:``.
    """
    chain: list[tuple[Path, dict[str, Any]]] = []
    seen: list[Path] = []
    named_by: Path | None = None
    while True:
        if path.resolve() in seen:
            names = [str(p) for p, _ in chain] + [str(path)]
            raise ConfigError(f"'{BASE_KEY}:' chain is a cycle: {' -> '.join(names)}")
        seen.append(path.resolve())
        data = read_yaml(path, named_by)
        if path.resolve() == root.resolve():
            break
        base = data.pop(BASE_KEY, None)
        chain.append((path, data))
        if base is None:
            break
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"{path}: '{BASE_KEY}' must name a YAML file (relative to this one), got {base!r}")
        path, named_by = path.parent / base, path
    return chain[::-1]


def parse_override(text: str) -> tuple[str, Any]:
    """``'train.lr=3e-4'`` -> ``('train.lr', 0.0003)``; the value is parsed as a YAML scalar or list."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    try:
        value = yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override '{text}': value is not valid YAML") from None
    return key, value
