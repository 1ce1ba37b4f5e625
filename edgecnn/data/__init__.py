"""Dataset loaders: one table of tasks, one entry point (``load_dataset``).

Every loader returns a ``LabelledSamples`` of raw samples (uint8 images at native size, or
float32 windows of raw vibration samples at the task rate); the InputSpec turns them into
tensors later, the same way the runtime does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgecnn.data.images import load_image_folder
from edgecnn.data.lecture import load_lecture_npz
from edgecnn.data.mnist import load_mnist
from edgecnn.data.recording_labels import (CWRU_CLASSES, MANIFEST_NAME, CwruRule, ManifestRule,
                                           PatternRule, cwru_label)
from edgecnn.data.samples import LabelledSamples, Skipped, fingerprint_files
from edgecnn.data.windows import load_recordings
from edgecnn.deploy.errors import DataError, InputError, SpecError, unknown_name
from edgecnn.deploy.spec import ImageSpec, InputSpec, SignalSpec


@dataclass(frozen=True)
class Task:
    """A named dataset layout: what it reads, into which kind of samples, and which options."""

    name: str
    kind: str  # "image" or "signal"
    loader: Callable[..., LabelledSamples]
    description: str
    options: frozenset[str] = frozenset()


_TASK_LIST = (
    Task("images", "image", load_image_folder,
         "defect images in class sub-folders or named <class>_<n>.jpg (NEU layout)"),
    Task("mnist", "image", load_mnist,
         "one MNIST IDX images/labels pair (raw or .gz), digits 0-9"),
    Task("cwru", "signal", load_recordings,
         "CWRU bearing .mat files labelled by their file names (10 classes)",
         frozenset({"stride", "channel", "sample_rate"})),
    Task("vibration", "signal", load_recordings,
         "vibration recordings (.mat/.npy/.npz/.csv/.wav) labelled by a labels.csv manifest "
         "or a file-name pattern",
         frozenset({"stride", "channel", "sample_rate", "manifest", "label_pattern"})),
    Task("lecture-npz", "signal", load_lecture_npz,
         "the lecture's archive of signal rows, one-hot labels and time axis",
         frozenset({"stride", "sample_rate", "allow_pickle"})),
)
TASK_ALIASES = {"neu": "images"}
# Task name (and alias) -> Task.
TASKS: dict[str, Task] = {task.name: task for task in _TASK_LIST}
TASKS.update({alias: TASKS[name] for alias, name in TASK_ALIASES.items()})


def get_task(name: str) -> Task:
    """The Task called ``name``; unknown names get close matches and the valid list."""
    if name in TASKS:
        return TASKS[name]
    raise unknown_name("task", name, TASKS, DataError)


def load_dataset(task: str, path, spec: InputSpec | ImageSpec | SignalSpec | None = None, *,
                 stride: int | None = None, labels: tuple[str, ...] | None = None,
                 allow_pickle: bool = False, label_pattern: str | None = None,
                 manifest=None, channel: str | int = "DE",
                 sample_rate: float | None = None) -> LabelledSamples:
    """Load ``path`` as ``task`` (see TASKS).

    spec   -- image tasks take their colour from it (gray if None); signal tasks their
              sample rate and window length (SignalSpec() defaults if None)
    stride -- window step for signal tasks; window_length // 4 if None
    labels -- the model's classes when evaluating: fixes the class order
    Options a task does not use are refused rather than ignored.
    """
    chosen = get_task(task)
    given = {"stride": stride is not None, "allow_pickle": bool(allow_pickle),
             "label_pattern": label_pattern is not None, "manifest": manifest is not None,
             "channel": channel != "DE", "sample_rate": sample_rate is not None}
    refused = sorted(name for name, used in given.items() if used and name not in chosen.options)
    if refused:
        raise InputError(f"task {chosen.name} does not take {', '.join(refused)}; "
                         f"it takes: {', '.join(sorted(chosen.options)) or 'no options'}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset path {path} does not exist")
    labels = tuple(labels) if labels is not None else None

    if chosen.kind == "image":
        image_spec = _section(spec, "image")
        if chosen.name == "mnist":
            return load_mnist(path, labels=labels)
        return load_image_folder(path, color=image_spec.color if image_spec else "gray",
                                 labels=labels)

    signal_spec = _section(spec, "signal") or SignalSpec()
    stride = signal_spec.window_length // 4 if stride is None else stride
    if chosen.name == "lecture-npz":
        return load_lecture_npz(path, signal_spec, labels=labels, allow_pickle=allow_pickle,
                                sample_rate=sample_rate, stride=stride)
    if chosen.name == "cwru":
        rule = CwruRule()
    else:
        rule = _vibration_rule(path, manifest, label_pattern)
    return load_recordings(path, signal_spec, stride, label_rule=rule, labels=labels,
                           channel=channel, sample_rate=sample_rate)


def _vibration_rule(path: Path, manifest, label_pattern):
    if manifest is not None and label_pattern is not None:
        raise InputError("give either a label manifest or a label pattern, not both")
    if label_pattern is not None:
        return PatternRule(label_pattern)
    if manifest is not None:
        return ManifestRule(manifest)
    default = (path if path.is_dir() else path.parent) / MANIFEST_NAME
    if not default.is_file():
        raise DataError(f"cannot tell the classes of the recordings in {path}: expected a "
                        f"{MANIFEST_NAME} (file,label[,sample_rate]) there, a manifest path, "
                        "or a label pattern with a (?P<label>...) group")
    return ManifestRule(default)


def _section(spec, kind: str):
    """The ImageSpec/SignalSpec inside ``spec``, refusing one of the wrong kind."""
    if spec is None:
        return None
    section = spec if not isinstance(spec, InputSpec) else (
        spec.image if kind == "image" else spec.signal)
    wanted = ImageSpec if kind == "image" else SignalSpec
    if not isinstance(section, wanted):
        found = spec.kind if isinstance(spec, InputSpec) else type(spec).__name__
        raise SpecError(f"this task reads {kind} data but the spec is for {found} input")
    return section


__all__ = [
    "CWRU_CLASSES", "CwruRule", "LabelledSamples", "ManifestRule", "PatternRule", "Skipped",
    "TASKS", "TASK_ALIASES", "Task", "cwru_label", "fingerprint_files", "get_task",
    "load_dataset", "load_image_folder", "load_lecture_npz", "load_mnist", "load_recordings",
]
