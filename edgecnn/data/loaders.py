"""One call shape for every task's loader: ``load(path, section, labels, stride, **options)``.

``section`` is the task's ImageSpec or SignalSpec (None: the layout's defaults); the task
table (``edgecnn.tasks``) names the loader of each task and the options it accepts, and
``edgecnn.data.load_dataset`` calls it.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.data.images import load_image_folder
from edgecnn.data.lecture import load_lecture_npz
from edgecnn.data.mnist import load_mnist
from edgecnn.data.recording_labels import MANIFEST_NAME, CwruRule, ManifestRule, PatternRule
from edgecnn.data.samples import LabelledSamples
from edgecnn.data.windows import load_recordings
from edgecnn.deploy.errors import DataError, InputError
from edgecnn.deploy.spec import DEFAULT_CHANNEL


def load_images(path: Path, section, labels, stride, bit_depth=None, working_copies=None,
                **_) -> LabelledSamples:
    # A model's files are read at its bit depth; training finds it unless one is given.
    given = bit_depth is not None
    if not given and labels is not None and section is not None:
        bit_depth = section.bit_depth
    # Working copies (area averaged) only where the model's resize averages by area too:
    # a bilinear or nearest resize of a copy is not that of the native frame the runtime
    # resizes (mean 6-10 grey levels apart on a 6000x4000 frame at 128 px)
    if working_copies is None:
        working_copies = section is not None and section.interpolation == "area"
    copies = section is not None and working_copies
    return load_image_folder(path, color=section.color if section else "gray", labels=labels,
                             bit_depth=bit_depth, depth_given=given,
                             size=(section.width, section.height) if copies else None)


def load_digits(path: Path, section, labels, stride, **_) -> LabelledSamples:
    return load_mnist(path, labels=labels)


def load_cwru(path: Path, section, labels, stride, channel=DEFAULT_CHANNEL,
              sample_rate=None, **_) -> LabelledSamples:
    return load_recordings(path, section, stride, label_rule=CwruRule(), labels=labels,
                           channel=channel, sample_rate=sample_rate)


def load_vibration(path: Path, section, labels, stride, channel=DEFAULT_CHANNEL,
                   sample_rate=None, manifest=None, label_pattern=None,
                   **_) -> LabelledSamples:
    return load_recordings(path, section, stride,
                           label_rule=vibration_rule(path, manifest, label_pattern),
                           labels=labels, channel=channel, sample_rate=sample_rate)


def load_lecture(path: Path, section, labels, stride, allow_pickle=False, sample_rate=None,
                 **_) -> LabelledSamples:
    return load_lecture_npz(path, section, labels=labels, allow_pickle=allow_pickle,
                            sample_rate=sample_rate, stride=stride)


def vibration_rule(path: Path, manifest, label_pattern):
    if manifest is not None and label_pattern is not None:
        raise InputError("give either a label manifest or a label pattern, not both")
    if label_pattern is not None:
        return PatternRule(label_pattern)
    if manifest is not None:
        return ManifestRule(manifest, root=path if path.is_dir() else path.parent)
    default = (path if path.is_dir() else path.parent) / MANIFEST_NAME
    if not default.is_file():
        raise DataError(f"cannot tell the classes of the recordings in {path}: expected a "
                        f"{MANIFEST_NAME} there (a header line file,label[,sample_rate], then "
                        "a row per recording), --manifest FILE, or --label-pattern with a "
                        "(?P<label>...) group")
    return ManifestRule(default)
