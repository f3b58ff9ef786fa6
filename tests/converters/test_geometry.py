"""EXIF orientation and box geometry, checked against Pillow's own orientation handling."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageOps

from converters.geometry import (
    Rect,
    clamp_rect,
    displayed_size,
    displayed_to_stored_rect,
    enclosing_rect,
    percent_to_pixels,
    pixels_to_percent,
    stored_to_displayed_rect,
)

orientations = st.integers(min_value=1, max_value=8)


@st.composite
def image_and_box(draw: st.DrawFn) -> tuple[int, int, Rect]:
    width = draw(st.integers(min_value=4, max_value=48))
    height = draw(st.integers(min_value=4, max_value=48))
    left = draw(st.integers(min_value=0, max_value=width - 1))
    top = draw(st.integers(min_value=0, max_value=height - 1))
    w = draw(st.integers(min_value=1, max_value=width - left))
    h = draw(st.integers(min_value=1, max_value=height - top))
    return width, height, Rect(left, top, w, h)


@given(image_and_box(), orientations)
def test_stored_to_displayed_matches_pillow_exif_transpose(
    case: tuple[int, int, Rect], orientation: int
) -> None:
    width, height, box = case
    stored = Image.new("L", (width, height), 0)
    stored.paste(255, (int(box.left), int(box.top), int(box.right), int(box.bottom)))
    stored.getexif()[0x0112] = orientation
    shown = ImageOps.exif_transpose(stored)
    assert shown.size == displayed_size(width, height, orientation)
    left, top, right, bottom = shown.getbbox()
    assert stored_to_displayed_rect(box, width, height, orientation) == Rect(
        left, top, right - left, bottom - top
    )


@given(image_and_box(), orientations)
def test_displayed_to_stored_inverts_exactly(case: tuple[int, int, Rect], orientation: int) -> None:
    width, height, box = case
    shown = stored_to_displayed_rect(box, width, height, orientation)
    assert displayed_to_stored_rect(shown, width, height, orientation) == box


@given(image_and_box())
def test_percent_round_trip_is_within_float_error(case: tuple[int, int, Rect]) -> None:
    width, height, box = case
    back = percent_to_pixels(pixels_to_percent(box, width, height), width, height)
    for a, b in zip(
        (back.left, back.top, back.width, back.height),
        (box.left, box.top, box.width, box.height),
        strict=True,
    ):
        assert math.isclose(a, b, abs_tol=1e-9)


@given(
    st.floats(0, 500),
    st.floats(0, 500),
    st.floats(1, 300),
    st.floats(1, 300),
    st.floats(-720, 720, allow_nan=False),
)
def test_enclosing_rect_contains_every_corner(
    x: float, y: float, w: float, h: float, rotation: float
) -> None:
    out = enclosing_rect(Rect(x, y, w, h), rotation)
    t = math.radians(rotation)
    for cx, cy in ((0, 0), (w, 0), (w, h), (0, h)):
        px = x + cx * math.cos(t) - cy * math.sin(t)
        py = y + cx * math.sin(t) + cy * math.cos(t)
        assert out.left - 1e-6 <= px <= out.right + 1e-6
        assert out.top - 1e-6 <= py <= out.bottom + 1e-6


def test_quarter_turn_swaps_width_and_height_about_the_top_left_corner() -> None:
    out = enclosing_rect(Rect(100, 100, 40, 10), 90)
    assert (round(out.left, 9), round(out.top, 9), round(out.width, 9), round(out.height, 9)) == (
        90,
        100,
        10,
        40,
    )


def test_clamp_cuts_to_the_frame() -> None:
    assert clamp_rect(Rect(-5, 10, 20, 100), 50, 60) == Rect(0, 10, 15, 50)
