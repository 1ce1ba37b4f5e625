"""What every loader does the same way: class order, skipped-file warnings, final checks.

Kept in one place so the image, MNIST and vibration loaders agree on how classes are
numbered (natural order, or the model's order when evaluating) and on what a bad file costs
(one warning, one ``Skipped`` entry, never the whole run).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from edgecnn.data.samples import LabelledSamples, Skipped, fingerprint_files, no_samples_message
from edgecnn.deploy.errors import DataError
from edgecnn.deploy.shown import one_line

log = logging.getLogger("edgecnn.data")


def natural_key(name: str):
    """Sort key putting "2" before "10" and "B007" before "B014"."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", name) if part]


def resolve_classes(found, labels: tuple[str, ...] | None, root,
                    preferred: tuple[str, ...] = ()) -> tuple[tuple[str, ...], dict[str, int]]:
    """Class names and name -> index.

    Training (``labels`` None): the classes found, those in ``preferred`` first in its order
    (e.g. the CWRU task's usual order), the rest in natural order. Evaluating an existing
    model: the model's order; a class the model does not know is an error, a subset is fine.
    """
    found = {str(name) for name in found}
    if labels is None:
        undecodable = sorted(name for name in found if not _utf8(name))
        if undecodable:       # it would go into the model's JSON, ONNX metadata and plots
            shown = ", ".join(repr(n.encode("utf-8", "surrogateescape"))[1:]
                              for n in undecodable[:3])
            raise DataError(f"{root}: class name(s) {shown} are not UTF-8 text (folder or "
                            "file names from a Windows share or a zip, in another encoding)"
                            "; rename them, e.g. with 'convmv -f cp1252 -t utf8 -r --notest'")
        rest = sorted(found - set(preferred), key=natural_key)
        names = tuple([name for name in preferred if name in found] + rest)
    else:
        names = tuple(str(label) for label in labels)
        unknown = sorted(found - set(names), key=natural_key)
        if unknown:  # quoted: a trailing space in a folder name must show
            raise DataError(f"{root} holds classes the model does not know: "
                            f"{', '.join(map(repr, unknown))}; the model's classes are: "
                            f"{', '.join(map(repr, names))}")
    return names, {name: i for i, name in enumerate(names)}


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SkipLog:
    """Collects files a loader cannot use; warns once per file, naming it and the reason."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.skipped: list[Skipped] = []

    def skip(self, path, reason: str) -> None:
        rel = relative_name(self.root, path)
        # one line per file, whatever its name holds (a newline, a terminal escape)
        log.warning("skipping %s: %s", one_line(path), one_line(reason))
        self.skipped.append(Skipped(rel, reason))


def note_lost_classes(named: dict[str, str], loaded: set[str]) -> None:
    """Warn about classes the data names (``named``: class -> what it held) of which no
    sample could be used: they are not in the model, and the user supplied them."""
    lost = [f"{name} ({named[name]})" for name in sorted(named) if name not in loaded]
    if lost:
        log.warning("NOTE: %d class(es) left out, no usable sample: %s", len(lost),
                    ", ".join(lost))


def relative_name(root: Path, path) -> str:
    """``path`` relative to ``root`` in POSIX form (the file name if it is outside root)."""
    path = Path(path)
    root = Path(root)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def finish(samples: LabelledSamples, root, files,
           labels: tuple[str, ...] | None) -> LabelledSamples:
    """Fingerprint the files used and refuse datasets nothing can be learned or measured on.

    Training needs two classes; evaluating an existing model (``labels`` given) needs only
    one sample, since a held-out folder may hold a single class.
    """
    root_dir = Path(root) if Path(root).is_dir() else Path(root).parent
    if labels is None:
        samples.require_trainable(root)
    elif len(samples) == 0:
        raise DataError(no_samples_message(root, len(samples.skipped), samples.kind))
    samples.fingerprint = fingerprint_files(root_dir, sorted(set(Path(f) for f in files)))
    return samples


def empty_positions(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.int64)
