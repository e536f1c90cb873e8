"""Drawing the synthetic 7W world's shapes scenes (``shapes.make_scene``): shapes with fill patterns on a noisy
background, and a window whose sky shows the time of day. Kept apart from the questions so each reads on its own;
``synth.SYNTH_VERSION`` covers both."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .questions import Scene
from .shapes import COLORS

SKY = {"night": (18, 24, 70), "day": (120, 190, 245), "sunset": (235, 95, 35), "dawn": (240, 175, 200)}


def _shape_mask(shape: str, size: int, outline: int) -> Image.Image:
    """An 'L' mask of ``shape`` in a size x size box (outline > 0: only the outline, that many pixels wide)."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    m = max(2, size // 14)
    box = (m, m, size - 1 - m, size - 1 - m)
    kw = {"fill": None, "outline": 255, "width": outline} if outline else {"fill": 255}
    if shape == "circle":
        draw.ellipse(box, **kw)
    elif shape == "square":
        inset = size // 10
        draw.rectangle((box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset), **kw)
    elif shape == "triangle":
        draw.polygon([(size / 2, m), (m, size - 1 - m), (size - 1 - m, size - 1 - m)], **kw)
    else:  # five-pointed star
        c, r_out, r_in = size / 2, size / 2 - m, (size / 2 - m) * 0.45
        pts = [
            (c + (r_out if i % 2 == 0 else r_in) * math.sin(i * math.pi / 5),
             c - (r_out if i % 2 == 0 else r_in) * math.cos(i * math.pi / 5) + size * 0.04)
            for i in range(10)
        ]  # fmt: skip
        draw.polygon(pts, **kw)
    return mask


def _pattern(fill: str, size: int, color: tuple[int, int, int]) -> np.ndarray:
    """[size, size, 3] uint8 texture painted inside the shape."""
    yy, xx = np.mgrid[0:size, 0:size]
    tex = np.empty((size, size, 3), np.uint8)
    tex[:] = color
    period = max(6, size // 6)
    if fill == "striped":
        tex[((xx + yy) // (period // 2)) % 2 == 1] = (250, 250, 250)
    elif fill == "dotted":
        d = ((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2
        tex[d > (period * 0.3) ** 2] = (250, 250, 250)
    return tex


def _paste(canvas: np.ndarray, tex: np.ndarray, mask: Image.Image, x: int, y: int) -> None:
    m = np.asarray(mask, np.float32)[..., None] / 255.0  # [s, s, 1]
    h, w = m.shape[:2]
    region = canvas[y : y + h, x : x + w].astype(np.float32)
    canvas[y : y + h, x : x + w] = (region * (1 - m) + tex * m).astype(np.uint8)


def _draw_window(img: Image.Image, time: str, box: tuple[int, int, int, int]) -> None:
    """A framed window whose sky tells the time of day."""
    x0, y0, x1, y1 = box
    draw = ImageDraw.Draw(img)
    draw.rectangle(box, fill=SKY[time], outline=(95, 60, 30), width=max(3, (x1 - x0) // 12))
    w, h = x1 - x0, y1 - y0
    r = w // 6
    if time == "night":
        for k in range(6):
            sx, sy = x0 + w * (0.2 + 0.13 * k), y0 + h * (0.25 + 0.4 * (k % 2))
            draw.ellipse((sx - 1.5, sy - 1.5, sx + 1.5, sy + 1.5), fill=(255, 255, 255))
        cx, cy = x0 + w * 0.62, y0 + h * 0.45
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(245, 240, 200))
        draw.ellipse((cx - r + r * 0.6, cy - r - r * 0.2, cx + r + r * 0.6, cy + r - r * 0.2), fill=SKY["night"])
    elif time == "day":
        cx, cy = x0 + w * 0.35, y0 + h * 0.35
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 230, 40))
    else:  # sun on the horizon: low and red at sunset, pale at dawn
        cx, cy = x0 + w * 0.5, y0 + h * 0.78
        sun = (200, 30, 20) if time == "sunset" else (255, 245, 180)
        draw.ellipse((cx - r * 1.3, cy - r * 1.3, cx + r * 1.3, cy + r * 1.3), fill=sun)
        draw.rectangle((x0 + 3, cy, x1 - 3, y1 - 3), fill=(60, 50, 60) if time == "sunset" else (120, 130, 150))
    frame = max(3, w // 12)
    draw.rectangle(box, outline=(95, 60, 30), width=frame)
    draw.line(((x0 + x1) // 2, y0, (x0 + x1) // 2, y1), fill=(95, 60, 30), width=max(2, frame // 2))


def render(scene: Scene, seed: int) -> Image.Image:
    """Draw a scene on a noisy light background (so JPEG and the CNN see texture, not flat colour)."""
    noise = np.random.default_rng(seed)
    base = noise.integers(185, 235)
    tint = noise.integers(-12, 13, size=3)
    canvas = np.clip(base + tint + noise.normal(0, 6, (scene.height, scene.width, 3)), 0, 255).astype(np.uint8)
    for obj in scene.objects:
        if obj["shape"] == "window":
            continue
        x, y, s, _ = obj["box"]
        outline = max(3, s // 9) if obj["fill"] == "outlined" else 0
        _paste(canvas, _pattern(obj["fill"], s, COLORS[obj["color"]]), _shape_mask(obj["shape"], s, outline), x, y)
    img = Image.fromarray(canvas, "RGB")
    for obj in scene.objects:
        if obj["shape"] == "window":
            x, y, s, _ = obj["box"]
            _draw_window(img, obj["time"], (x, y, x + s - 1, y + s - 1))
    return img
