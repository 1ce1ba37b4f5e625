"""Where in a frame to look: a region of interest, fixed tiles or a sliding grid.

A line camera often sees more than the model's input (a wide strip, a conveyor with
margins). Each region is cropped from the frame (a view, no copy), preprocessed to the
model size and classified; the region goes into the event, so the defect is located.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Region:
    x: int
    y: int
    w: int
    h: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y:self.y + self.h, self.x:self.x + self.w]


def _ints(text: str, pattern: str, what: str, example: str) -> list[int]:
    match = re.fullmatch(pattern, str(text).strip())
    if not match:
        raise InputError(f"{what} must look like {example}; found {text!r}")
    return [int(v) for v in match.groups()]


def parse_roi(text: str) -> Region:
    x, y, w, h = _ints(text, r"(\d+),(\d+),(\d+),(\d+)", "--roi", "x,y,w,h (e.g. 0,40,640,400)")
    if w < 1 or h < 1:
        raise InputError(f"--roi width and height must be positive; found {text!r}")
    return Region(x, y, w, h)


def parse_tiles(text: str) -> tuple[int, int]:
    rows, cols = _ints(text, r"(\d+)[xX](\d+)", "--tiles", "ROWSxCOLS (e.g. 2x3)")
    if rows < 1 or cols < 1:
        raise InputError(f"--tiles needs at least 1 row and 1 column; found {text!r}")
    return rows, cols


def parse_grid(text: str) -> tuple[int, int, int]:
    w, h, stride = _ints(text, r"(\d+)[xX](\d+):(\d+)", "--grid",
                         "WxH:STRIDE (e.g. 200x200:100)")
    if min(w, h, stride) < 1:
        raise InputError(f"--grid sizes and stride must be positive; found {text!r}")
    return w, h, stride


def _positions(length: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:   # the last window touches the far edge
        starts.append(length - size)
    return starts


# A region narrower than this cannot show a defect (the image loaders' and the frame
# faults' limit too); it would only be stretched to the model's input.
MIN_REGION_SIDE = 8
# Regions per frame: 45 tiles of 200x200 cover an 1800x1000 frame; 4096 of 128x128 inputs
# are a 270 MB batch. A grid of stride 1 would make tens of thousands (gigabytes of
# tensors, seconds per frame, an event each).
MAX_REGIONS = 4096


def plan_regions(frame_shape: tuple[int, ...], roi: Region | None = None,
                 tiles: tuple[int, int] | None = None,
                 grid: tuple[int, int, int] | None = None) -> list[Region]:
    """Regions (frame coordinates) to classify in frames of ``frame_shape``."""
    height, width = frame_shape[:2]
    if tiles and grid:
        raise InputError("give either --tiles or --grid, not both")
    area = roi or Region(0, 0, width, height)
    if area.x + area.w > width or area.y + area.h > height:
        raise InputError(f"--roi {','.join(map(str, area.as_list()))} does not fit in the "
                         f"{width}x{height} frame")
    if min(area.w, area.h) < MIN_REGION_SIDE:
        raise InputError(f"--roi {','.join(map(str, area.as_list()))} is {area.w}x{area.h} "
                         f"pixels: expected at least {MIN_REGION_SIDE}x{MIN_REGION_SIDE}")
    if tiles:
        rows, cols = tiles
        if area.h // rows < MIN_REGION_SIDE or area.w // cols < MIN_REGION_SIDE:
            raise InputError(f"--tiles {rows}x{cols} makes tiles of {area.w // cols}x"
                             f"{area.h // rows} pixels in the {area.w}x{area.h} area: expected "
                             f"tiles of at least {MIN_REGION_SIDE}x{MIN_REGION_SIDE}")
        if rows * cols > MAX_REGIONS:
            raise InputError(f"--tiles {rows}x{cols} makes {rows * cols} tiles per frame: "
                             f"expected at most {MAX_REGIONS}")
        ys = np.linspace(area.y, area.y + area.h, rows + 1).round().astype(int)
        xs = np.linspace(area.x, area.x + area.w, cols + 1).round().astype(int)
        return [Region(int(xs[c]), int(ys[r]), int(xs[c + 1] - xs[c]), int(ys[r + 1] - ys[r]))
                for r in range(rows) for c in range(cols)]
    if grid:
        w, h, stride = grid
        if w > area.w or h > area.h:
            raise InputError(f"--grid window {w}x{h} is larger than the {area.w}x{area.h} area")
        if min(w, h) < MIN_REGION_SIDE:
            raise InputError(f"--grid window {w}x{h} is too small: expected at least "
                             f"{MIN_REGION_SIDE}x{MIN_REGION_SIDE} pixels")
        ys, xs = _positions(area.h, h, stride), _positions(area.w, w, stride)
        if len(ys) * len(xs) > MAX_REGIONS:
            raise InputError(f"--grid {w}x{h}:{stride} makes {len(ys) * len(xs)} windows per "
                             f"{area.w}x{area.h} frame: expected at most {MAX_REGIONS} (a "
                             f"larger stride, e.g. {w}x{h}:{max(w, h) // 2})")
        return [Region(area.x + x, area.y + y, w, h) for y in ys for x in xs]
    return [area]
