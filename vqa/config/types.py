"""Setting one dotted key on a config of dataclasses, checked against the field's type and limits.

Strict on purpose: a misspelt key or a value of the wrong type is a problem that names the key and where it came
from, because a silently ignored ``train.lrr=1e-3`` wastes a whole training run.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal


class Unset(enum.Enum):
    """The value of a key that no file has set yet (``None`` is a real value: ``data.grounding: null``)."""

    UNSET = "unset"

    def __repr__(self) -> str:
        return "<unset>"


UNSET = Unset.UNSET


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Return (ok, value converted to ``tp``). Only int -> float is converted; bool is never a number."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, out = coerce(value, arg)
            if ok:
                return True, out
        return False, value
    if origin is Literal:
        return value in typing.get_args(tp), value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        items = [coerce(v, typing.get_args(tp)[0]) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if tp is type(None):
        return value is None, value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, tp), value


def check_limits(key: str, value: Any, meta: typing.Mapping[str, Any]) -> str | None:
    if not isinstance(value, (int, float)):
        return None
    if "min" in meta and value < meta["min"]:
        return f"{key} must be >= {meta['min']}, got {value!r}"
    if "max" in meta and value > meta["max"]:
        return f"{key} must be <= {meta['max']}, got {value!r}"
    if "min_exclusive" in meta and value <= meta["min_exclusive"]:
        return f"{key} must be > {meta['min_exclusive']}, got {value!r}"
    return None


def _fields(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _unknown(key: str, name: str, known: Sequence[str], prefix: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    return f"unknown key '{key}'{hint}"


def set_key(cfg: Any, dotted: str, value: Any, problems: list[str], source: str) -> None:
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
                    set_key(cfg, f"{dotted}.{k}", v, problems, source)
                return
            node = child
            continue
        if not is_last:
            problems.append(f"{source}: '{'.'.join(parts[: depth + 1])}' is not a section (in '{dotted}')")
            return
        ok, converted = coerce(value, hints[name])
        if not ok:
            got = f"{type(value).__name__} {value!r}"
            problems.append(f"{source}: '{dotted}' must be {type_name(hints[name])}, got {got}")
            return
        limit = check_limits(dotted, converted, fields[name].metadata) if converted is not None else None
        if limit:
            problems.append(f"{source}: {limit}")
            return
        setattr(node, name, converted)


def leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``[(dotted key, value), ...]`` of every key of a config of dataclasses, in schema order."""
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(node):
        child = getattr(node, f.name)
        out += leaves(child, f"{prefix}{f.name}.") if dataclasses.is_dataclass(child) else [(prefix + f.name, child)]
    return out
