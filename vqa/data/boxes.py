"""A box on an image: Visual7W's grounding boxes (telling) and candidate boxes (pointing) share this shape.

Coordinates are absolute pixels of the original image, top-left origin, clipped at 0 (the width and height shrink
with it), as the official files give them. ``id`` is what the file keys the box by: the qa_id of a grounding box,
the box_id of a pointing candidate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    id: int
    name: str  # what the box holds, for people only: the model never reads it
    x: float
    y: float
    width: float
    height: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.x + self.width, self.y + self.height)

    def normalised(self, image_w: int, image_h: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in [0, 1] of the image: the features stage squash-resizes images, so these are also
        the box's place on the grid. The far edges are clipped to the image."""
        return (self.x / image_w, self.y / image_h, min(self.x + self.width, image_w) / image_w,
                min(self.y + self.height, image_h) / image_h)  # fmt: skip

    def scaled(self, image_w: int, image_h: int, size: int) -> tuple[float, float, float, float]:
        """(x, y, w, h) on the size x size image the CNN saw (the features stage squash-resizes)."""
        sx, sy = size / image_w, size / image_h
        return self.x * sx, self.y * sy, self.width * sx, self.height * sy

    def outside(self, image_w: int, image_h: int) -> str | None:
        """Why this box cannot be a candidate on an image of this size (nothing of it inside), or None."""
        if self.x >= image_w or self.y >= image_h:
            return f"box_id {self.id} starts at ({self.x:g}, {self.y:g}), outside the {image_w}x{image_h} image"
        return None


def clip(start: float, size: float) -> tuple[float, float]:
    """(start, size) of a 1-D extent clipped at 0: the part before the image is cut off, the end stays."""
    end = start + size
    start = max(start, 0.0)
    return start, end - start
