"""Drawing the synthetic world's pages: digits and letters in several typefaces, strokes and inks on paper.

Why glyphs: real Visual7W asks what a small region *holds* ("What is written on the sign?", "What is the man
holding?"), and an ImageNet grid hands a model colours and shapes almost linearly but not the identity of a small
glyph. Every glyph varies in typeface (the TrueType fonts matplotlib ships: DejaVu Sans/Serif/Mono and their bold
and oblique cuts, STIX, Computer Modern), stroke (thicker or thinner, slanted, rotated, blurred) and ink, on plain,
ruled, squared or stained paper, so no single template identifies a character.

The glyph's mask is a pure function of its parameters (``glyph_mask``): the scene generator calls it to write the
tight grounding box, and the renderer draws the very same pixels.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
    "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf", "cmmi10.ttf",
)  # fmt: skip
INKS = {
    "black": (25, 25, 32),
    "blue": (28, 62, 200),
    "red": (205, 30, 38),
    "green": (22, 135, 55),
    "purple": (125, 38, 165),
    "brown": (125, 72, 28),
}
PAPERS = ("plain", "ruled", "squared", "stained")


@functools.lru_cache(maxsize=256)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / name), size)


def glyph_mask(char: str, font: str, size: int, rotation: float, shear: float, stroke: int) -> Image.Image:
    """An 'L' mask of ``char`` about ``size`` pixels tall, cropped to its ink: the typeface drawn, its stroke made
    thicker (``stroke`` > 0) or thinner (< 0), slanted by ``shear`` and rotated by ``rotation`` degrees."""
    pad = size
    canvas = Image.new("L", (3 * size, 3 * size), 0)
    ImageDraw.Draw(canvas).text((pad + size // 2, pad + size // 2), char, font=_font(font, size), fill=255,
                                anchor="mm")  # fmt: skip
    if stroke > 0:
        canvas = canvas.filter(ImageFilter.MaxFilter(2 * stroke + 1))
    elif stroke < 0:
        canvas = canvas.filter(ImageFilter.MinFilter(2 * -stroke + 1))
    c = 1.5 * size  # slant about the centre: x' = x + shear * (y - c)
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, shear, -shear * c, 0, 1, 0),
                              resample=Image.Resampling.BILINEAR)  # fmt: skip
    canvas = canvas.rotate(rotation, resample=Image.Resampling.BILINEAR)
    box = canvas.getbbox() or (0, 0, 1, 1)
    return canvas.crop(box)


def glyph_params(rng: Any, height: int) -> dict[str, Any]:
    """Random typeface and stroke for one glyph about ``height`` pixels tall (drawn by the scene generator)."""
    font = rng.choice(FONTS)
    heavy = "Bol" in font or font == "cmb10.ttf"  # only a heavy cut survives thinning
    return {
        "font": font,
        "size": max(12, int(height * 1.25)),  # a font's digit is about 0.73 of its em size
        "rotation": round(rng.uniform(-15, 15), 1),
        "shear": round(rng.uniform(-0.25, 0.25), 2),
        "stroke": rng.choice(((-1,) if heavy and height >= 40 else ()) + (0, 0, 1, 1) + ((2,) if height >= 40 else ())),
        "blur": round(rng.uniform(0.0, 1.1), 2),
        "alpha": round(rng.uniform(0.78, 1.0), 2),
    }


def _paper(noise: np.random.Generator, kind: str, w: int, h: int) -> np.ndarray:
    """[h, w, 3] uint8 paper: a light tint with grain, and ruled lines, squares or stains by ``kind``."""
    tint = np.array([245, 242, 232]) + noise.integers(-18, 8, size=3)
    page = tint + noise.normal(0, 4, (h, w, 1)) + noise.normal(0, 2, (h, w, 3))
    if kind == "ruled":
        gap = int(noise.integers(14, 24))
        rows = np.arange(int(noise.integers(4, gap)), h, gap)
        page[rows] = page[rows] * 0.55 + np.array([120, 150, 215]) * 0.45
        margin = int(noise.integers(w // 10, w // 5))
        page[:, margin : margin + 2] = page[:, margin : margin + 2] * 0.4 + np.array([215, 90, 90]) * 0.6
    elif kind == "squared":
        gap = int(noise.integers(10, 18))
        page[:: gap] = page[:: gap] * 0.7 + np.array([150, 170, 190]) * 0.3
        page[:, :: gap] = page[:, :: gap] * 0.7 + np.array([150, 170, 190]) * 0.3
    elif kind == "stained":  # coffee rings and low-frequency blotches
        yy, xx = np.mgrid[0:h, 0:w]
        for _ in range(int(noise.integers(2, 5))):
            cx, cy, r = noise.uniform(0, w), noise.uniform(0, h), noise.uniform(0.1, 0.35) * min(w, h)
            d = np.hypot(xx - cx, yy - cy) / r
            blot = np.exp(-(d**2)) * noise.uniform(10, 30) + np.exp(-((d - 1) ** 2) * 60) * noise.uniform(15, 35)
            page = page - blot[..., None] * np.array([0.5, 0.8, 1.3])
    return np.clip(page, 0, 255).astype(np.uint8)


def render_page(scene: Any, seed: int) -> Image.Image:
    """Draw a page scene (``synth_pages``): its paper, then every glyph in its ink at its place."""
    noise = np.random.default_rng(seed)
    canvas = _paper(noise, scene.extra["paper"], scene.width, scene.height).astype(np.float32)
    for g in scene.objects:
        mask = glyph_mask(g["char"], g["font"], g["size"], g["rotation"], g["shear"], g["stroke"])
        if g["blur"] > 0:
            mask = mask.filter(ImageFilter.GaussianBlur(g["blur"]))
        m = np.asarray(mask, np.float32)[..., None] / 255.0 * g["alpha"]  # [h, w, 1]
        x, y = g["box"][:2]
        h, w = m.shape[:2]
        ink = np.array(INKS[g["ink"]], np.float32) + noise.normal(0, 6, 3)
        region = canvas[y : y + h, x : x + w]
        canvas[y : y + h, x : x + w] = region * (1 - m[: region.shape[0], : region.shape[1]]) + ink * m[
            : region.shape[0], : region.shape[1]
        ]
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
