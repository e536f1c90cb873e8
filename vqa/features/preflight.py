"""The feature store on disk, before extraction: is it ours, can it serve this dataset, is there room.

A store is a folder of fp16 shards with ``settings.json`` (how it was built, over which images) and, once finished,
``manifest.json``. Settings that differ mean another store (refused, or wiped with ``features.overwrite``); the
same extraction over another image list means a store that can serve any dataset whose images it holds (a
pointing file over some of the telling images) without extracting anything.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import VQAError
from ..common.files import atomic_write_json
from .store import DTYPE, describe_difference, file_size, read_marker


def prepare_store(root: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Main process only: settings check (or wipe), disk check, settings.json."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "settings.json"
    if overwrite:
        for pattern in ("shard_*", "manifest.json", "settings.json"):
            for p in root.glob(pattern):
                p.unlink()
    elif path.is_file():
        old = json.loads(path.read_text())
        if old != settings:
            raise VQAError(f"{root} holds features built with other settings ({describe_difference(old, settings)})."
                           " Use another run.dir, or features.overwrite=true to rebuild.")  # fmt: skip
    for partial in root.glob("*.partial"):
        partial.unlink()  # left by a crash; never trusted
    c, h, w = settings["grid"]
    need = settings["n_images"] * c * h * w * np.dtype(DTYPE).itemsize
    have = sum(p.stat().st_size for p in root.glob("shard_*.npy"))
    free = shutil.disk_usage(root).free
    if need - have > free:
        raise VQAError(f"not enough disk for the feature store in {root}: needs {(need - have) / 1e9:.2f} GB more, "
                       f"{free / 1e9:.2f} GB free ({settings['n_images']} images x {c}x{h}x{w} fp16)")  # fmt: skip
    atomic_write_json(path, settings)


IMAGE_LIST = ("images_sha1", "n_images")  # the settings that name the store's images, not how they were extracted


def same_extraction(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal settings apart from the image list: one store can serve both datasets' images."""
    return {k: v for k, v in a.items() if k not in IMAGE_LIST} == {k: v for k, v in b.items() if k not in IMAGE_LIST}


def served_by_store(root: Path, settings: dict[str, Any], image_ids: Sequence[int],
                    paths: dict[int, Path]) -> dict[str, Any] | None:  # fmt: skip
    """The manifest of a finished store in ``root`` that already holds every image of ``image_ids`` with the same
    extraction ``settings`` over *another* image list (a pointing file over some of the telling images, a filtered
    dataset), or None when the store is this dataset's own or there is none. An image the store lacks, or one whose
    file changed since the store was built, is named."""
    path = root / "settings.json"
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    if old == settings or not same_extraction(old, settings):
        return None  # this dataset's own store, or one built differently (``prepare_store`` says how)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise VQAError(f"{root} is still being built for another image list ({old['n_images']} images); finish it "
                       "with that dataset first, or use another features.dir")  # fmt: skip
    manifest = json.loads(manifest_path.read_text())
    held = {int(k) for k in manifest["images"]} | {int(k) for k in manifest["missing"]}
    lacking = [i for i in image_ids if i not in held]
    if lacking:
        raise VQAError(f"the feature store {root} serves another image list ({old['n_images']} images) and lacks "
                       f"{len(lacking)} of this dataset's {len(image_ids)}; use another features.dir, or "
                       "features.overwrite=true to rebuild it for this dataset:", bad_lines(
                           {i: "not in the store" for i in lacking[:10]}, paths))  # fmt: skip
    changed = _changed_images(root, manifest, image_ids, paths)
    if changed:
        raise VQAError(f"{len(changed)} image(s) changed since the feature store {root} was built (file sizes "
                       "differ); rerun `make features` with the dataset that built it, or use another features.dir:",
                       bad_lines({i: "changed" for i in changed[:10]}, paths))  # fmt: skip
    return manifest


def _changed_images(root: Path, manifest: dict[str, Any], image_ids: Sequence[int],
                    paths: dict[int, Path]) -> list[int]:  # fmt: skip
    """Images of ``image_ids`` whose file size differs from the one their shard's marker recorded."""
    recorded: dict[int, int] = {}
    for shard in range(len(manifest["shards"])):
        marker = read_marker(root, shard, manifest["fingerprint"]) or {}
        recorded.update(zip(map(int, marker.get("ids", [])), marker.get("sizes", []), strict=False))
    return [i for i in image_ids if i in recorded and recorded[i] != file_size(paths[i])]


def bad_lines(bad: dict[int, str], paths: dict[int, Path]) -> list[str]:
    return [f"image_id {i} ({paths[i]}): {reason}" for i, reason in sorted(bad.items())]
