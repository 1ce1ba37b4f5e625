"""Dataset loaders and their one entry point, ``load_dataset``.

Every loader returns a ``LabelledSamples`` of raw samples (uint8 images at native size, or
float32 windows of raw vibration samples at the task rate); the InputSpec turns them into
tensors later, the same way the runtime does. Which loader reads which task, and with
which options, is the task table's business (``edgecnn.tasks``).
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.data.images import load_image_folder
from edgecnn.data.lecture import load_lecture_npz
from edgecnn.data.mnist import load_mnist
from edgecnn.data.recording_labels import (
    CWRU_CLASSES,
    CwruRule,
    ManifestRule,
    PatternRule,
    cwru_label,
)
from edgecnn.data.samples import LabelledSamples, Skipped, fingerprint_files
from edgecnn.data.windows import load_recordings
from edgecnn.deploy.errors import DataError, InputError
from edgecnn.deploy.spec import DEFAULT_CHANNEL, ImageSpec, InputSpec, SignalSpec, spec_section


def load_dataset(task: str, path, spec: InputSpec | ImageSpec | SignalSpec | None = None, *,
                 stride: int | None = None, labels: tuple[str, ...] | None = None,
                 allow_pickle: bool = False, label_pattern: str | None = None,
                 manifest=None, channel: str | int = DEFAULT_CHANNEL,
                 sample_rate: float | None = None,
                 bit_depth: int | None = None,
                 working_copies: bool | None = None) -> LabelledSamples:
    """Load ``path`` as ``task`` (see ``edgecnn.tasks.TASKS``).

    spec   -- image tasks take their colour from it (gray if None); signal tasks their
              sample rate and window length (SignalSpec() defaults if None)
    stride -- window step for signal tasks; window_length // 4 if None
    labels -- the model's classes when evaluating: fixes the class order
    bit_depth -- images: the bits of data in 16-bit files (default: the spec's when
              evaluating, found from the files when training)
    working_copies -- images: whether images many times the input may be kept as smaller
              copies (``images.working_copy``); None: where the spec resizes by area
    Options a task does not use are refused rather than ignored.
    """
    from edgecnn.tasks import get_task

    chosen = get_task(task)
    given = {"stride": stride, "allow_pickle": allow_pickle or None,
             "label_pattern": label_pattern, "manifest": manifest,
             "channel": None if channel == DEFAULT_CHANNEL else channel,
             "sample_rate": sample_rate, "bit_depth": bit_depth}
    given = {name: value for name, value in given.items() if value is not None}
    refused = sorted(set(given) - chosen.options)
    if refused:
        raise InputError(f"task {chosen.name} does not take {', '.join(refused)}; "
                         f"it takes: {', '.join(sorted(chosen.options)) or 'no options'}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset path {path} does not exist")
    labels = tuple(labels) if labels is not None else None
    section = None if spec is None else spec_section(spec, chosen.kind)
    if chosen.kind == "signal":
        section = section or SignalSpec()
        stride = section.window_length // 4 if stride is None else stride
    given.pop("stride", None)
    if chosen.kind == "image" and working_copies is not None:
        given["working_copies"] = working_copies
    return chosen.load(path, section, labels, stride, **given)


__all__ = [
    "CWRU_CLASSES", "CwruRule", "LabelledSamples", "ManifestRule", "PatternRule", "Skipped",
    "cwru_label", "fingerprint_files", "load_dataset", "load_image_folder", "load_lecture_npz",
    "load_mnist", "load_recordings",
]
