"""Image decoding and the exact preprocessing fed to the CNN.

One function turns a file into the backbone's input, used by extraction (in DataLoader workers) and by
``predict.py``, so both see identical pixels. Preprocessing: decode (JPEG at reduced scale when the file is much
larger than needed), convert any mode to RGB, squash-resize to ``size x size`` (bilinear, antialiased, aspect not
kept: nothing is cropped away, so every grounding box stays in view), scale to [0, 1], normalise per channel.
Grid cell (i, j) of an S x S grid therefore covers x in [j*W/S, (j+1)*W/S), y in [i*H/S, (i+1)*H/S) of the
original W x H image. EXIF orientation is ignored: the grounding boxes refer to the pixels as stored.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold


class BadImage(Exception):
    """An image that cannot be used; ``str(e)`` says why in a few words."""


def preprocessing(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> dict[str, Any]:
    """The record of what ``load_image`` + ``normalize`` do, stored in the feature manifest."""
    return {
        "resize": "squash",  # to size x size, aspect ratio not kept, nothing cropped
        "size": [size, size],
        "interpolation": "bilinear (antialiased, Pillow)",
        "jpeg_draft": True,  # large JPEGs decoded at 1/2, 1/4 or 1/8 scale, never below size
        "color": "RGB (grayscale, CMYK, palette, RGBA converted; alpha dropped)",
        "exif_orientation": "ignored (pixels as stored, like the grounding boxes)",
        "scale": "1/255",
        "mean": list(mean),
        "std": list(std),
    }


def load_image(path: str | Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` to a ``[size, size, 3]`` uint8 RGB array, or raise BadImage naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise BadImage("missing file")
    if path.stat().st_size == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise BadImage(f"too large: {w}x{h} pixels (limit features.max_pixels={max_pixels})")
                img.draft("RGB", (size, size))
                return squash(img, size)
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not an image (content not recognised by Pillow)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"too large: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise BadImage(f"cannot decode: {e}") from None


def header_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels (Pillow's errors pass through)."""
    with Image.open(path) as img:
        return img.size


def squash(img: Image.Image, size: int) -> np.ndarray:
    """A decoded image -> ``[size, size, 3]`` uint8 RGB, resized as every image of the store is (see
    ``preprocessing``): one function, so an image given in memory is preprocessed like one read from disk."""
    rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def check_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Cheap pre-flight check (header only): the reason the image is unusable, or None if it looks fine."""
    path = Path(path)
    if not path.is_file():
        return "missing file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
    except UnidentifiedImageError:
        return "not an image (content not recognised by Pillow)"
    except Image.DecompressionBombError:
        return "too large (decompression bomb)"
    except (OSError, ValueError, SyntaxError) as e:
        return f"cannot read header: {e}"
    if w * h > max_pixels:
        return f"too large: {w}x{h} pixels (limit features.max_pixels={max_pixels})"
    return None


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[3, H, W]`` uint8 (normalisation happens on the device, after the copy)."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))  # copy: writable, CHW


def normalize(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``[B, 3, S, S]`` uint8 -> float32 normalised, channels_last (the fast layout for convs on CPU and GPU)."""
    m = torch.tensor(mean, device=batch.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=batch.device).view(1, 3, 1, 1)
    x = (batch.float() / 255.0 - m) / s
    return x.contiguous(memory_format=torch.channels_last)
