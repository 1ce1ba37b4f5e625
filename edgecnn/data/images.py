"""Defect images in class sub-folders (``root/<class>/*.jpg``) or named ``<class>_<n>.jpg``.

The flat naming is NEU's; both layouts may be mixed in one folder.

Images are decoded with the runtime's ``read_image`` and kept uint8 at their native size, so
training and the line-side camera loop start from identical pixels; the InputSpec resizes and
normalises later.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgecnn.data.assemble import (SkipLog, empty_positions, finish, natural_key,
                                   relative_name, resolve_classes)
from edgecnn.data.samples import LabelledSamples
from edgecnn.deploy.errors import DataError, InputError
from edgecnn.deploy.preprocess import IMAGE_SUFFIXES, read_image
from edgecnn.deploy.spec import COLOR_MODES

# NEU: "rolled-in_scale_12" -> "rolled-in_scale"; the class name may hold "-" and "_".
_FLAT_NAME = re.compile(r"^(?P<label>.+?)_(?P<number>\d+)$")
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG", b"IEND\xaeB`\x82"


def flat_class_name(file_name: str) -> str | None:
    """Class of a flat-named file (``pitted_surface_3.jpg`` -> ``pitted_surface``), else None."""
    match = _FLAT_NAME.match(Path(file_name).stem)
    return match.group("label") if match else None


def is_image_file(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
            and not path.name.startswith("."))


def find_labelled_images(root: Path, skips: SkipLog) -> list[tuple[Path, str]]:
    """(file, class) pairs: files in ``root/<class>/`` take the folder's name, files directly
    in ``root`` take the class from their flat name. Unlabelled files are skipped."""
    found: list[tuple[Path, str]] = []
    for entry in sorted(root.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found.extend((path, entry.name) for path in
                         sorted(entry.iterdir(), key=lambda p: natural_key(p.name))
                         if is_image_file(path))
        elif is_image_file(entry):
            label = flat_class_name(entry.name)
            if label is None:
                skips.skip(entry, "cannot tell its class: expected a class sub-folder or a "
                                  "file named <class>_<number>" + entry.suffix)
            else:
                found.append((entry, label))
    return found


def load_image_folder(root, color: str = "gray",
                      labels: tuple[str, ...] | None = None) -> LabelledSamples:
    """Load a folder of labelled images as uint8 arrays in ``color`` (gray, bgr or rgb).

    Unreadable, truncated or non-image files are warned about, skipped and counted in
    ``.skipped``. ``labels`` (evaluating a model) fixes the class order.
    """
    root = Path(root)
    if color not in COLOR_MODES:
        raise InputError(f"image colour must be one of {', '.join(COLOR_MODES)}; found {color!r}")
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    skips = SkipLog(root)
    candidates = find_labelled_images(root, skips)
    if labels is not None:  # a class the model does not know fails before any decoding
        resolve_classes({label for _, label in candidates}, labels, root)

    items, label_names, sources, used = [], [], [], []
    for path, label in candidates:
        try:
            _require_complete(path)
            image = read_image(path, color)
        except InputError as exc:
            skips.skip(path, str(exc))
            continue
        items.append(image)
        label_names.append(label)
        sources.append(relative_name(root, path))
        used.append(path)
    # Classes come from what was decoded: a class whose files all failed is not a class.
    class_names, index = resolve_classes(set(label_names), labels, root)
    samples = LabelledSamples("image", items, [index[name] for name in label_names],
                              class_names, sources,
                              empty_positions(len(items)), skips.skipped)
    return finish(samples, root, used, labels)


def _require_complete(path: Path) -> None:
    """Refuse truncated JPEG/PNG files: some decoders return them half grey without error."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            size = handle.seek(0, 2)
            handle.seek(max(0, size - 1024))
            tail = handle.read().rstrip(b"\x00\r\n ")
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if head.startswith(_JPEG_START) and not tail.endswith(_JPEG_END):
        raise InputError(f"{path} is a truncated JPEG (no end-of-image marker)")
    if head.startswith(_PNG_START) and not tail.endswith(_PNG_END):
        raise InputError(f"{path} is a truncated PNG (no IEND chunk)")
