"""Checkpoints on disk, written so that a crash never leaves one that looks complete.

``<run.dir>/checkpoints/``:
  epoch_003/        full training state after epoch 3 (Accelerate ``save_state``: model, optimizer, scheduler,
                    RNG) + trainer_state.json; written to ``.tmp_epoch_003`` and renamed when complete
  best/             the best-on-val weights (model.safetensors) + meta.json (epoch, val accuracy, model spec,
                    feature store fingerprint): what evaluation and inspection load

Checkpoints are directories named by epoch, not Accelerate's automatic ``checkpoint_<i>`` naming: that counter
is not restored by ``load_state`` (accelerate #3306) and a half-written folder would be picked as the latest.
Model weights are safetensors, loaded without pickle.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from .errors import VQAError
from .io import atomic_write_dir, atomic_write_json
from .model import ModelSpec, VQAModel

EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


def checkpoints_dir(cfg: Any) -> Path:
    return Path(cfg.run.dir) / "checkpoints"


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """``[(epoch, path)]`` of the finished epoch checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := EPOCH_DIR.match(p.name)) and p.is_dir()]
    return sorted(f for f in found if (f[1] / "trainer_state.json").is_file())


def finalize(tmp: Path, epoch: int, trainer_state: dict[str, Any], keep: int) -> Path:
    """Main process: mark a fully written ``save_state`` folder complete, rename it into place, prune old ones."""
    atomic_write_json(tmp / "trainer_state.json", trainer_state)
    final = tmp.parent / f"epoch_{epoch:03d}"
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for _, old in complete_checkpoints(tmp.parent)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_best(model: VQAModel, root: Path, meta: dict[str, Any]) -> None:
    """Weights (safetensors) + meta.json into ``best/``, swapped in atomically."""

    def write(tmp: str) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(Path(tmp) / "model.safetensors"))
        atomic_write_json(Path(tmp) / "meta.json", {**meta, "spec": model.spec.to_dict()})

    atomic_write_dir(root / "best", write)


def resolve(cfg: Any, which: str) -> Path:
    """``best`` | ``last`` | a path -> the folder holding model.safetensors (+ meta.json)."""
    root = checkpoints_dir(cfg)
    if which == "best":
        path = root / "best"
    elif which == "last":
        done = complete_checkpoints(root)
        if not done:
            raise VQAError(f"no finished checkpoint in {root}: train first (`make train`)")
        path = done[-1][1]
    else:
        path = Path(which)
    if not (path / "model.safetensors").is_file():
        raise VQAError(f"no model.safetensors in {path}: train first (`make train`) or check eval.checkpoint")
    return path


def load_model(path: Path, spec: ModelSpec | None = None) -> tuple[VQAModel, dict[str, Any]]:
    """Rebuild the model from ``meta.json`` (or ``spec``) and load its safetensors weights."""
    meta_path = path / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if spec is None:
        if "spec" not in meta:
            raise VQAError(f"{path} has no meta.json describing the model")
        spec = ModelSpec(**{**meta["spec"], "grid": tuple(meta["spec"]["grid"])})
    model = VQAModel(spec)
    try:
        state = load_file(str(path / "model.safetensors"))
    except Exception as e:  # truncated or not a safetensors file
        raise VQAError(f"cannot read {path / 'model.safetensors'}: {e}") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other shapes
        raise VQAError(f"{path} holds weights of another model: {str(e).splitlines()[1:2]}") from None
    if missing or unexpected:
        raise VQAError(f"{path} holds weights of another model ({len(missing)} missing, {len(unexpected)} "
                       f"unexpected tensors, e.g. {(missing + unexpected)[:3]}); check model.* settings")  # fmt: skip
    return model.eval(), meta

