"""The grid feature store on disk: format, shard writing, manifest, and a reader of rows by positioned reads.

Layout of ``<run.dir>/features/``:
  settings.json          what the store is built from (backbone, weights, size, precision, image list); a rerun
                         with other settings is refused instead of mixing features of two networks
  shard_00000.npy        fp16 ``[n, C, H, W]`` numpy arrays, memory-mappable, ``features.shard_size`` images each,
                         in sorted image_id order (the layout does not depend on the number of processes)
  shard_00000.json       completion marker, written only after the shard was flushed and renamed into place
  manifest.json          written once every shard is done: image_id -> (shard, row), grid shape, dtype,
                         preprocessing, counts, missing images, software versions

A crash at any moment loses at most the shards in progress: ``.partial`` files are never trusted, and a shard is
complete iff its marker exists with the current settings' fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.errors import VQAError
from ..common.files import atomic_write_json

FORMAT = "vqa7w-features/1"
DTYPE = np.float16


def features_dir(cfg: Any) -> Path:
    """``features.dir``, or ``<run.dir>/features``: several runs (baselines, telling and pointing) share a store."""
    return Path(cfg.features.dir) if cfg.features.dir else Path(cfg.run.dir) / "features"


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """'backbone: 'resnet152' there, 'efficientnet_lite0' now; image list differs' — for refusal messages."""
    parts = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) == new.get(k):
            continue
        if k in ("images_sha1", "preprocessing", "grid"):
            parts.append(f"{'image list' if k == 'images_sha1' else k} differs")
        else:
            parts.append(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now")
    return "; ".join(parts)


def shard_path(root: Path, shard: int) -> Path:
    return root / f"shard_{shard:05d}.npy"


def marker_path(root: Path, shard: int) -> Path:
    return root / f"shard_{shard:05d}.json"


def file_size(path: Path) -> int:
    """The file's size in bytes, -1 when it cannot be read (the extraction then reports it by name)."""
    try:
        return path.stat().st_size
    except OSError:
        return -1


def read_marker(root: Path, shard: int, fp: str) -> dict[str, Any] | None:
    """The shard's completion marker if the shard is complete and was built with settings ``fp``."""
    try:
        marker = json.loads(marker_path(root, shard).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("fingerprint") != fp or not shard_path(root, shard).is_file():
        return None
    return marker


class ShardWriter:
    """Fills one shard's memmap row by row; ``finish`` makes it durable, then visible, then marked complete."""

    def __init__(self, root: Path, shard: int, ids: Sequence[int], grid: Sequence[int],
                 sizes: Sequence[int] | None = None) -> None:  # fmt: skip
        self.root, self.shard, self.ids = root, shard, list(ids)
        self.sizes = None if sizes is None else list(sizes)  # the images' file sizes, checked on every rerun
        self.tmp = root / f"shard_{shard:05d}.npy.partial"
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=DTYPE, shape=(len(ids), *grid))
        self.missing: dict[int, str] = {}
        self.left = len(ids)

    def write(self, rows: Sequence[int], feats: np.ndarray) -> None:
        self.array[list(rows)] = feats  # [b, C, H, W]
        self.left -= len(rows)

    def fail(self, row: int, reason: str) -> None:
        self.missing[self.ids[row]] = reason
        self.left -= 1

    def finish(self, fp: str, rank: int, world_size: int) -> dict[str, Any]:
        self.array.flush()
        del self.array
        with open(self.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, shard_path(self.root, self.shard))
        marker = {"shard": self.shard, "file": shard_path(self.root, self.shard).name, "ids": self.ids,
                  "missing": {str(k): v for k, v in self.missing.items()}, "fingerprint": fp,
                  "rank": rank, "world_size": world_size,
                  **({"sizes": self.sizes} if self.sizes is not None else {})}  # fmt: skip
        atomic_write_json(marker_path(self.root, self.shard), marker, indent=None)
        return marker


def software() -> dict[str, str]:
    import accelerate
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "accelerate": accelerate.__version__, "numpy": np.__version__}  # fmt: skip


def write_manifest(root: Path, settings: dict[str, Any], n_shards: int, seconds: float) -> dict[str, Any]:
    """Gather the shard markers into manifest.json (main process, after every shard is done)."""
    fp = fingerprint(settings)
    images: dict[str, list[int]] = {}
    missing: dict[str, str] = {}
    shards = []
    for shard in range(n_shards):
        marker = read_marker(root, shard, fp)
        if marker is None:
            raise VQAError(f"shard {shard} of {root} is not complete; rerun the features stage to finish it")
        for row, image_id in enumerate(marker["ids"]):
            if str(image_id) in marker["missing"]:
                missing[str(image_id)] = marker["missing"][str(image_id)]
            else:
                images[str(image_id)] = [shard, row]
        shards.append({k: marker[k] for k in ("file", "rank", "world_size")} | {"count": len(marker["ids"])})
    manifest = {
        **settings,
        "fingerprint": fp,
        "shards": shards,
        "images": images,
        "missing": missing,
        "counts": {
            "images": settings["n_images"], "extracted": len(images), "missing": len(missing), "shards": n_shards
        },
        "software": software(),
        "seconds": round(seconds, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(root / "manifest.json", manifest, indent=None)
    return manifest


# ------------------------------------------------------------------------------------------------ reader
def load_manifest(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise VQAError(f"no feature store at {Path(root)} (manifest.json missing): run `make features` first")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise VQAError(f"{path} is not valid JSON ({e}); rerun `make features`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise VQAError(f"{path} is not a {FORMAT} manifest; rerun `make features` with features.overwrite=true")
    return manifest


class FeatureReader:
    """``reader[image_id] -> [C, H, W]`` float16 tensor, read lazily from the shard files.

    Why positioned reads (``os.preadv`` of one row into a fresh tensor) and not a memory map: pages of a mapped
    file count in the process's resident memory once touched, so an epoch over a memory-mapped store makes RSS
    grow with the store (measured by ``make bench``). Read into private memory, a row costs one copy, the OS page
    cache (shared by every process, evictable) holds the file, and RSS stays flat whatever the store's size.
    Files are opened on first use in each process and dropped when pickled, so the reader is safe to hand to
    DataLoader workers, forked or spawned.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        self.index = {int(k): (s, r) for k, (s, r) in self.manifest["images"].items()}
        self.missing = {int(k): v for k, v in self.manifest["missing"].items()}
        self.grid = tuple(self.manifest["grid"])  # (C, H, W)
        self._files = [self.root / s["file"] for s in self.manifest["shards"]]
        self._row_bytes = int(np.prod(self.grid)) * np.dtype(DTYPE).itemsize
        self._open: dict[int, tuple[int, int]] = {}  # shard -> (fd, offset of row 0)
        self._pid = os.getpid()
        self.bytes_read = 0  # by this process (a DataLoader worker counts its own): what `make bench` reports

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = {}
        return state

    def __del__(self) -> None:
        self.close()

    def close(self, _getpid: Any = os.getpid, _close: Any = os.close) -> None:
        """Close this process's files (``os`` bound at definition: ``__del__`` may run after module teardown)."""
        if getattr(self, "_pid", None) == _getpid():
            for fd, _ in self._open.values():
                _close(fd)
        self._open = {}

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.index

    def _shard(self, shard: int) -> tuple[int, int]:
        if os.getpid() != self._pid:  # forked: never share a file offset table across processes
            self._open, self._pid = {}, os.getpid()
        if shard not in self._open:
            with open(self._files[shard], "rb") as fh:  # the .npy header says where row 0 starts
                fmt = np.lib.format
                major, _ = fmt.read_magic(fh)
                shape, _, dtype = (fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0)(fh)
                offset = fh.tell()
            if tuple(shape[1:]) != self.grid or np.dtype(dtype) != np.dtype(DTYPE):
                raise VQAError(f"{self._files[shard]} holds {dtype} {shape}, the manifest says {self.grid} "
                               f"{DTYPE}: rerun `make features` with features.overwrite=true")  # fmt: skip
            self._open[shard] = (os.open(self._files[shard], os.O_RDONLY), offset)
        return self._open[shard]

    def __getitem__(self, image_id: int) -> torch.Tensor:
        if image_id not in self.index:
            why = self.missing.get(image_id, "not in the dataset the store was built from")
            raise VQAError(f"image_id {image_id} has no features in {self.root}: {why}")
        shard, row = self.index[image_id]
        fd, offset = self._shard(shard)
        out = np.empty(self.grid, dtype=DTYPE)  # [C, H, W] float16, private memory
        got = os.preadv(fd, [memoryview(out).cast("B")], offset + row * self._row_bytes)
        if got != self._row_bytes:
            raise VQAError(f"{self._files[shard]} is truncated (row {row} of image_id {image_id}): rerun "
                           "`make features` with features.overwrite=true")  # fmt: skip
        self.bytes_read += got
        return torch.from_numpy(out)


def check_covers(reader: FeatureReader, image_ids: Any) -> None:
    """Refuse a dataset with images the store never saw (neither extracted nor recorded as unusable), naming them:
    a store serves any dataset over a subset of its images, never one over others."""
    lacking = sorted({int(i) for i in image_ids} - set(reader.index) - set(reader.missing))
    if lacking:
        shown = ", ".join(map(str, lacking[:10])) + (", ..." if len(lacking) > 10 else "")
        raise VQAError(f"the feature store {reader.root} lacks {len(lacking)} image(s) of this dataset (image_id "
                       f"{shown}): run `make features` for this dataset, with its own features.dir if the store "
                       "serves another one")  # fmt: skip


def check_store(f: Any, reader: FeatureReader) -> None:
    """Refuse a store extracted with other ``features.*`` settings (``f``) than the config's, before long work."""
    m = reader.manifest
    there = (m["backbone"], m["image_size"], m.get("hypercolumn", []), m.get("space_to_depth", []))
    if there != (f.backbone, f.image_size, list(f.hypercolumn), list(f.space_to_depth)):
        raise VQAError(f"the features in {reader.root} were extracted with {m['backbone']}@{m['image_size']} "
                       f"hypercolumn={there[2]} space_to_depth={there[3]}, but the config says "
                       f"{f.backbone}@{f.image_size} hypercolumn={list(f.hypercolumn)} "
                       f"space_to_depth={list(f.space_to_depth)}: rerun `make features` or fix features.*")  # fmt: skip
