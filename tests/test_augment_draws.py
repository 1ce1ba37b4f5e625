"""How many camera changes a training image gets at once (edgecnn.augment): a bounded
number per sample, a share left clean, every family drawn."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields

import numpy as np
import pytest

from edgecnn.augment import (
    CLEAN_PROBABILITY,
    MAX_IMAGE_FAMILIES,
    ImageChange,
    augment_batch,
    draw_image_change,
)
from edgecnn.tasks import get_task

# ImageChange fields each camera family sets (flips and quarter turns are symmetries)
FIELDS = {"gain": ("gain",), "offset": ("offset",), "gamma": ("gamma",),
          "contrast": ("contrast",), "noise": ("noise",), "defocus": ("defocus",),
          "motion": ("motion",), "jpeg": ("jpeg",), "rotate": ("angle",), "zoom": ("scale",),
          "shift": ("dx", "dy")}


def _families_on(change: ImageChange) -> set[str]:
    neutral = ImageChange()
    changed = {f.name for f in fields(ImageChange)
               if getattr(change, f.name) != getattr(neutral, f.name)}
    return {family for family, names in FIELDS.items() if changed & set(names)}


def test_images_get_at_most_a_bounded_number_of_changes_and_some_stay_clean():
    families = get_task("images").augment
    rng = np.random.default_rng(0)
    draws = [draw_image_change(families, 1.0, rng) for _ in range(4000)]
    counts = Counter(len(_families_on(d)) for d in draws)
    assert max(counts) <= MAX_IMAGE_FAMILIES
    # noise sigma or a shift can be drawn as ~0: "clean" is at least the clean share
    assert counts[0] / len(draws) == pytest.approx(CLEAN_PROBABILITY, abs=0.03)
    assert counts[MAX_IMAGE_FAMILIES] > 0.25 * len(draws)
    seen = Counter(f for d in draws for f in _families_on(d))
    camera = [f for f in families if f in FIELDS]
    assert set(seen) == set(camera)
    # drawn uniformly: every family within a third of the mean rate
    mean = np.mean([seen[f] for f in camera])
    assert all(abs(seen[f] - mean) < mean / 3 for f in camera), seen
    # the symmetries are not camera changes: clean draws are still mirrored and turned
    clean = [d for d in draws if not _families_on(d)]
    assert any(d.flip_h for d in clean) and any(d.quarter for d in clean)


def test_one_family_or_none_is_drawn_as_asked():
    rng = np.random.default_rng(1)
    draws = [draw_image_change(("noise",), 1.0, rng) for _ in range(500)]
    assert {f for d in draws for f in _families_on(d)} == {"noise"}
    assert all(draw_image_change((), 1.0, rng) == ImageChange() for _ in range(20))
    assert all(draw_image_change(("flip",), 1.0, rng).gain == 1.0 for _ in range(20))


def test_strength_zero_leaves_a_batch_unchanged():
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (40, 60), dtype=np.uint8) for _ in range(6)]
    families = tuple(f for f in get_task("images").augment if f in FIELDS and f != "jpeg")
    out = augment_batch(images, "image", families, 0.0, np.random.default_rng(3))
    assert all(np.array_equal(a, b) for a, b in zip(images, out))
