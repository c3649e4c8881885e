"""Picture dimensions from a size's long side and an aspect ratio."""

from __future__ import annotations


def parse_ratio(ratio: str) -> tuple[int, int]:
    """``"16:9"`` → ``(16, 9)`` (the ratio was validated against the catalogue before)."""
    width, height = ratio.split(":")
    return int(width), int(height)


def fit_ratio(long_side_px: int, ratio_width: int, ratio_height: int) -> tuple[int, int]:
    """Width and height with the long side ``long_side_px`` and the short side rounded to even."""
    if ratio_width >= ratio_height:
        return long_side_px, _even(long_side_px * ratio_height / ratio_width)
    return _even(long_side_px * ratio_width / ratio_height), long_side_px


def _even(pixels: float) -> int:
    return max(2, 2 * round(pixels / 2))
