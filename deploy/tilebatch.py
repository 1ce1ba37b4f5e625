"""All tiles of a frame with one resize: the tiled area is resized to (rows x model height,
cols x model width) once and every tile's tensor is a view of it, scaled in one numpy
call, instead of one ``preprocess_image`` per tile.

For a bilinear (or nearest) downscale of equal, edge-to-edge tiles this is the same
arithmetic: every output pixel of a tile samples the same source pixels, none across a
tile border. Rather than trust that for every OpenCV build, interpolation and scale, the
first frame of each size is done both ways and the batched path is used only if the
tensors are bit-identical; otherwise tiles are preprocessed one by one as before. So the
runtime still equals offline preprocessing of each tile.
"""

from __future__ import annotations

import cv2
import numpy as np

from .preprocess import _INTERPOLATION, preprocess_image, scale_pixels
from .spec import InputSpec
from .tiles import Region


class TileBatch:
    """The batched preprocessing of one tile layout (``plan`` returns None when the
    regions are not equal edge-to-edge tiles on a grid, or the model would upscale)."""

    def __init__(self, regions: list[Region], area: Region, rows: int, cols: int,
                 spec: InputSpec):
        self.regions = regions                  # the layout this batch was planned for
        self.area, self.rows, self.cols, self.spec = area, rows, cols, spec
        self.verified: bool | None = None       # None: not yet compared on a frame

    @classmethod
    def plan(cls, regions: list[Region], spec: InputSpec) -> "TileBatch | None":
        if len(regions) < 2 or spec.kind != "image":
            return None
        w, h = regions[0].w, regions[0].h
        xs = sorted({r.x for r in regions})
        ys = sorted({r.y for r in regions})
        rows, cols = len(ys), len(xs)
        grid = [Region(x, y, w, h) for y in ys for x in xs]
        if grid != list(regions) or xs != list(range(xs[0], xs[0] + cols * w, w)) or \
                ys != list(range(ys[0], ys[0] + rows * h, h)):
            return None
        image = spec.image
        if w < image.width or h < image.height:     # an upscale clamps at tile borders
            return None
        return cls(regions, Region(xs[0], ys[0], cols * w, rows * h), rows, cols, spec)

    def _fill(self, pixels: np.ndarray, tensor: np.ndarray, resized: np.ndarray | None):
        image = self.spec.image
        size = (self.cols * image.width, self.rows * image.height)
        resized = cv2.resize(self.area.crop(pixels), size, dst=resized,
                             interpolation=_INTERPOLATION[image.interpolation])
        c = image.channels
        tiles = resized.reshape(self.rows, image.height, self.cols, image.width, c) \
            .transpose(0, 2, 1, 3, 4)
        scale_pixels(tiles, image,
                     tensor.reshape(self.rows, self.cols, image.height, image.width, c))
        return resized

    def fill(self, pixels: np.ndarray, regions: list[Region], tensor: np.ndarray,
             resized: np.ndarray | None = None) -> np.ndarray | None:
        """Fill ``tensor`` (regions x H x W x C) from ``pixels``; returns the resize buffer
        to hand back next time (None when the tiles went one by one)."""
        ready = pixels.ndim == 2 if self.spec.image.color == "gray" else \
            (pixels.ndim == 3 and pixels.shape[2] == 3 and self.spec.image.color == "bgr")
        if self.verified is None and ready:
            for i, region in enumerate(regions):
                preprocess_image(region.crop(pixels), self.spec, out=tensor[i])
            check = np.empty_like(tensor)
            resized = self._fill(pixels, check, None)
            self.verified = bool(np.array_equal(check, tensor))
            return resized
        if self.verified and ready:
            return self._fill(pixels, tensor, resized)
        for i, region in enumerate(regions):
            preprocess_image(region.crop(pixels), self.spec, out=tensor[i])
        return None
