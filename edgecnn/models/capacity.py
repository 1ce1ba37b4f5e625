"""Model capacity that fits the data, by one written rule.

A task's default image architecture (``edge-image``) is swapped for its narrower or wider
registry sibling by the number of training images: below SMALL_DATA ``edge-image-s`` (a
few hundred images cannot pin down 300 k weights), from LARGE_DATA ``edge-image-l``.
An architecture named with ``--arch`` is never changed.
"""

from __future__ import annotations

SMALL_DATA = 500
LARGE_DATA = 20000
FAMILIES = {"edge-image": ("edge-image-s", "edge-image", "edge-image-l")}


def fit_capacity(architecture: str, train_samples: int) -> tuple[str, str | None]:
    """(architecture, reason it was changed or None)."""
    family = FAMILIES.get(architecture)
    if family is None:
        return architecture, None
    small, medium, large = family
    if train_samples < SMALL_DATA:
        return small, f"{train_samples} training samples < {SMALL_DATA}"
    if train_samples >= LARGE_DATA:
        return large, f"{train_samples} training samples >= {LARGE_DATA}"
    return medium, None
