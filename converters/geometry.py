"""Geometry between Label Studio's view of an image and Rekognition's.

Two coordinate systems meet here:

* **displayed**: what the browser shows, i.e. the stored image with its EXIF orientation applied.
  Label Studio's ``x``/``y``/``width``/``height`` are *percent* of the displayed image, and its
  ``original_width``/``original_height`` are the displayed image's pixel size.
* **stored**: the pixels of the file as stored in S3, EXIF orientation ignored. Rekognition trains on
  these, so manifest boxes are integer *pixels* of the stored image.

The eight EXIF orientations are the symmetries of a rectangle, so an axis-aligned box stays an
axis-aligned box under each of them and converts both ways exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ORIENTATIONS = range(1, 9)


@dataclass(frozen=True, slots=True)
class Rect:
    """An axis-aligned rectangle: top-left corner and size, in one unit (pixels or percent)."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        """The right edge."""
        return self.left + self.width

    @property
    def bottom(self) -> float:
        """The bottom edge."""
        return self.top + self.height


def check_orientation(orientation: int) -> int:
    """Return ``orientation`` when it is an EXIF orientation (1..8); raise ``ValueError`` otherwise."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation!r}")
    return orientation


def swaps_axes(orientation: int) -> bool:
    """True for the orientations (5-8) that show the stored width as the displayed height."""
    return check_orientation(orientation) >= 5


def displayed_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """Displayed pixel size of a stored ``width`` x ``height`` image with EXIF ``orientation``."""
    return (height, width) if swaps_axes(orientation) else (width, height)


def stored_to_displayed_point(
    x: float, y: float, width: int, height: int, orientation: int
) -> tuple[float, float]:
    """Map a point in stored pixels of a ``width`` x ``height`` image to displayed pixels."""
    o = check_orientation(orientation)
    if o == 1:
        return x, y
    if o == 2:
        return width - x, y
    if o == 3:
        return width - x, height - y
    if o == 4:
        return x, height - y
    if o == 5:
        return y, x
    if o == 6:
        return height - y, x
    if o == 7:
        return height - y, width - x
    return y, width - x


def displayed_to_stored_point(
    u: float, v: float, width: int, height: int, orientation: int
) -> tuple[float, float]:
    """Map a point in displayed pixels to stored pixels; ``width``/``height`` are the *stored* size."""
    o = check_orientation(orientation)
    if o == 1:
        return u, v
    if o == 2:
        return width - u, v
    if o == 3:
        return width - u, height - v
    if o == 4:
        return u, height - v
    if o == 5:
        return v, u
    if o == 6:
        return v, height - u
    if o == 7:
        return width - v, height - u
    return width - v, u


def _rect_from_corners(a: tuple[float, float], b: tuple[float, float]) -> Rect:
    left, right = sorted((a[0], b[0]))
    top, bottom = sorted((a[1], b[1]))
    return Rect(left, top, right - left, bottom - top)


def stored_to_displayed_rect(rect: Rect, width: int, height: int, orientation: int) -> Rect:
    """A box in stored pixels of a ``width`` x ``height`` image, as displayed pixels."""
    if orientation == 1:
        return rect
    a = stored_to_displayed_point(rect.left, rect.top, width, height, orientation)
    b = stored_to_displayed_point(rect.right, rect.bottom, width, height, orientation)
    return _rect_from_corners(a, b)


def displayed_to_stored_rect(rect: Rect, width: int, height: int, orientation: int) -> Rect:
    """A box in displayed pixels, as stored pixels; ``width``/``height`` are the *stored* size."""
    if orientation == 1:
        return rect
    a = displayed_to_stored_point(rect.left, rect.top, width, height, orientation)
    b = displayed_to_stored_point(rect.right, rect.bottom, width, height, orientation)
    return _rect_from_corners(a, b)


def percent_to_pixels(rect: Rect, width: float, height: float) -> Rect:
    """A rectangle in percent of a ``width`` x ``height`` image, in pixels of it."""
    return Rect(
        rect.left * width / 100.0,
        rect.top * height / 100.0,
        rect.width * width / 100.0,
        rect.height * height / 100.0,
    )


def pixels_to_percent(rect: Rect, width: float, height: float) -> Rect:
    """A rectangle in pixels of a ``width`` x ``height`` image, in percent of it."""
    return Rect(
        rect.left * 100.0 / width,
        rect.top * 100.0 / height,
        rect.width * 100.0 / width,
        rect.height * 100.0 / height,
    )


def enclosing_rect(rect: Rect, rotation: float) -> Rect:
    """The axis-aligned box enclosing ``rect`` turned ``rotation`` degrees about its top-left corner.

    Label Studio's convention: clockwise on screen (y grows downward). Work in pixels: percent is
    anisotropic on non-square images, so rotating percent would skew the box.
    """
    if rotation % 360 == 0:
        return rect
    theta = math.radians(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    x, y, w, h = rect.left, rect.top, rect.width, rect.height
    xs = (x, x + w * cos, x + w * cos - h * sin, x - h * sin)
    ys = (y, y + w * sin, y + w * sin + h * cos, y + h * cos)
    return Rect(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def clamp_rect(rect: Rect, width: float, height: float) -> Rect:
    """``rect`` cut to the ``width`` x ``height`` frame (a box wholly outside becomes empty)."""
    left = min(max(rect.left, 0.0), width)
    top = min(max(rect.top, 0.0), height)
    right = min(max(rect.right, 0.0), width)
    bottom = min(max(rect.bottom, 0.0), height)
    return Rect(left, top, right - left, bottom - top)


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves away from minus infinity (not banker's rounding)."""
    return math.floor(value + 0.5)
