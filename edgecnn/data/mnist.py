"""MNIST-style IDX files: ``<prefix>-images-idx3-ubyte[.gz]`` + ``<prefix>-labels-idx1-ubyte[.gz]``.

The headers are checked against the file lengths, so a truncated download fails with the
expected and the found size instead of training on garbage.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np

from edgecnn.data.assemble import finish, resolve_classes
from edgecnn.data.samples import LabelledSamples
from edgecnn.deploy.errors import DataError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_IDX_NAME = re.compile(r"^(?P<prefix>.*?)[-_.]?(?P<kind>images|labels)[-_.]idx(?P<dims>[13])"
                       r"[-_.]ubyte(?P<gz>\.gz)?$", re.IGNORECASE)


def find_idx_pair(path) -> tuple[Path, Path]:
    """(images file, labels file) for a folder holding exactly one pair, or for either file."""
    path = Path(path)
    if path.is_file():
        match = _IDX_NAME.match(path.name)
        if not match:
            raise DataError(f"{path} is not named like an IDX file "
                            "(<prefix>-images-idx3-ubyte[.gz] or <prefix>-labels-idx1-ubyte[.gz])")
        pairs = {k: v for k, v in _pairs(path.parent).items()
                 if k == match.group("prefix").lower()}
        where = f"next to {path.name} in {path.parent}"
    elif path.is_dir():
        pairs = _pairs(path)
        where = f"in {path}"
    else:
        raise DataError(f"MNIST path {path} does not exist")
    complete = {k: v for k, v in pairs.items() if len(v.get("images", [])) == 1
                and len(v.get("labels", [])) == 1}
    if len(complete) != 1 or len(pairs) != 1:
        found = sorted(p.name for files in pairs.values() for group in files.values()
                       for p in group)
        raise DataError(f"expected exactly one IDX images/labels pair {where} "
                        "(<prefix>-images-idx3-ubyte[.gz] + <prefix>-labels-idx1-ubyte[.gz]); "
                        f"found {', '.join(found) or 'none'}")
    files = next(iter(complete.values()))
    return files["images"][0], files["labels"][0]


def read_idx(path, magic: int) -> np.ndarray:
    """Read one IDX file (raw or gzip) as uint8, checking magic number and length."""
    path = Path(path)
    data = _read_bytes(path)
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{path} is truncated: expected an IDX header of {header_len} bytes; "
                        f"found {len(data)} bytes")
    found_magic = int.from_bytes(data[:4], "big")
    if found_magic != magic:
        raise DataError(f"{path} is not an IDX {'images' if magic == IMAGES_MAGIC else 'labels'} "
                        f"file: expected magic number {magic}; found {found_magic}")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if ndim == 3 and (dims[1] == 0 or dims[2] == 0):
        raise DataError(f"{path}: expected positive image dimensions; found {dims[1]}x{dims[2]}")
    expected = header_len + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{path} is {state}: the header promises {' x '.join(map(str, dims))} "
                        f"values ({expected} bytes); found {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)


def load_mnist(path, labels: tuple[str, ...] | None = None) -> LabelledSamples:
    """Digits as a uint8 (N, rows, cols) array with classes "0".."9".

    ``path`` is a folder with one IDX pair or one of the pair's files. ``sources`` are
    ``<images file>#<index>`` so every sample is traceable and distinct.
    """
    images_path, labels_path = find_idx_pair(path)
    images = read_idx(images_path, IMAGES_MAGIC)
    digits = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(digits):
        raise DataError(f"{images_path.name} holds {len(images)} images but "
                        f"{labels_path.name} holds {len(digits)} labels; expected equal counts")
    if digits.size and digits.max() > 9:
        raise DataError(f"{labels_path} holds label {int(digits.max())}; expected digits 0-9")
    root = images_path.parent
    class_names, index = resolve_classes({str(d) for d in np.unique(digits)}, labels, path)
    lookup = np.full(10, -1, dtype=np.int64)
    for digit in range(10):
        lookup[digit] = index.get(str(digit), -1)
    samples = LabelledSamples(
        "image", images, lookup[digits], class_names,
        [f"{images_path.name}#{i}" for i in range(len(images))],
        np.zeros(len(images), dtype=np.int64), [])
    return finish(samples, root, [images_path, labels_path], labels)


def _pairs(folder: Path) -> dict[str, dict[str, list[Path]]]:
    pairs: dict[str, dict[str, list[Path]]] = {}
    for entry in sorted(folder.iterdir()):
        match = _IDX_NAME.match(entry.name)
        if not entry.is_file() or not match:
            continue
        kind = match.group("kind").lower()
        if (kind == "images") != (match.group("dims") == "3"):
            continue
        pairs.setdefault(match.group("prefix").lower(), {}).setdefault(kind, []).append(entry)
    return pairs


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a damaged gzip file (expected a complete .gz of an IDX "
                        f"file): {exc}") from None
