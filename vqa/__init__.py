"""Visual7W-style multiple-choice VQA. ``from vqa import Predictor`` answers questions with a trained run."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["Prediction", "Predictor"]
__version__ = "0.1.0"  # the one place: pyproject.toml reads it


def __getattr__(name: str) -> Any:
    """Lazy: ``import vqa.<module>`` stays light (the entry points set up the allocator before torch loads)."""
    if name in __all__:
        return getattr(import_module(".predictor", __name__), name)
    raise AttributeError(f"module 'vqa' has no attribute {name!r}")
