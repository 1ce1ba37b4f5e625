"""The one table of tasks: what each kind of data is, how it is read, and how it trains.

A row names a data layout (its loader and the loader options it accepts) plus the
defaults a plant engineer should not have to know: input contract, architecture, training
recipe, augmentation, and -- for the tasks with a shipped bundle -- the recipe that made
that bundle (data folder, export options, calibration folder). ``load_dataset``, training,
export calibration, the Makefile's bundle targets (through ``edgecnn recipe``) and the
benchmarks all read this table; nothing repeats it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, fields, replace
from typing import Any

from edgecnn.deploy.errors import DataError, InputError, unknown_name
from edgecnn.deploy.spec import ImageSpec, InputSpec, SignalSpec

# Loader options every command that reads labelled data takes (see ``load_dataset``).
RECORDING_OPTIONS = frozenset({"stride", "channel", "sample_rate"})


@dataclass(frozen=True)
class Shipped:
    """How the shipped bundle of a task was made (``make bundle-<name>``)."""

    bundle: str                              # deploy/bundles/<bundle>, calibration_data/<bundle>
    data: tuple[str, ...]                    # folder inside a datasets root, first match wins
    export: tuple[tuple[str, Any], ...] = ()  # edgecnn export options of that bundle


@dataclass(frozen=True)
class Task:
    name: str
    kind: str                                # "image" or "signal"
    description: str
    loader: str                              # function of edgecnn.data.loaders (imported on use)
    architecture: str                        # our edge architecture for it
    seed_architecture: str                   # the lecture's reference architecture
    options: frozenset[str] = frozenset()    # loader options it accepts
    aliases: tuple[str, ...] = ()
    image: ImageSpec | None = None
    signal: SignalSpec | None = None
    augment: tuple[str, ...] = ()            # raw-domain families, see edgecnn.augment
    augment_strength: float = 1.0            # scales every family's range (0: no change)
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 3e-3
    patience: int = 8
    average_weights: bool = False            # validate/keep a weight average (edgecnn.schedule)
    stride: int | None = None                # signal windows: training stride (default window/4)
    follow_data_rate: bool = False           # signals: train at the recordings' rate
    shipped: Shipped | None = None

    def load(self, path, section, labels, stride, **options):
        """Read ``path`` with this task's loader (``edgecnn.data.load_dataset`` calls it)."""
        from edgecnn.data import loaders

        return getattr(loaders, self.loader)(path, section, labels, stride, **options)

    def spec(self, labels, **overrides) -> InputSpec:
        """The task's InputSpec for these labels, with image/signal fields overridden."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if self.kind == "image":
            return InputSpec("image", tuple(labels), image=_replace(self.image, overrides))
        return InputSpec("signal", tuple(labels), signal=_replace(self.signal, overrides))

    def recipe(self) -> dict:
        """The shipped bundle's recipe: train and export arguments (``edgecnn recipe``)."""
        if self.shipped is None:
            raise DataError(f"task {self.name} has no shipped bundle; tasks with one: "
                            f"{', '.join(t.shipped.bundle for t in TASK_LIST if t.shipped)}")
        return {"task": self.name, "bundle": self.shipped.bundle,
                "data": list(self.shipped.data), "train": {"task": self.shipped.bundle},
                "export": dict(self.shipped.export)}


def _replace(section, overrides):
    known = {f.name for f in fields(section)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(f"option(s) {', '.join(unknown)} do not apply to "
                         f"{type(section).__name__} inputs")
    return replace(section, **overrides)


# CWRU-style vibration: 12 kHz, 4096-sample windows (about 10 shaft turns at 1750 rpm),
# the lecture's spectrogram parameters, log magnitude so that a change in load (gain)
# becomes an offset the network can learn to ignore.
_VIBRATION = SignalSpec(sample_rate=12000.0, window_length=4096, nperseg=256, noverlap=32,
                        transform="log")

# What a line does to a camera / a sensor (edgecnn.augment), on by default.
_CAMERA = ("gain", "offset", "gamma", "contrast", "noise", "defocus", "motion", "jpeg",
           "rotate", "zoom", "shift")
_DIGITS = ("gain", "offset", "noise", "defocus", "jpeg", "rotate", "zoom", "shift")
_SENSOR = ("gain", "dc", "noise", "hum", "speed")

# Camera images: 128x128 gray, bilinear resize. The resize runs on every frame at run
# time: OpenCV's area resize at a fractional ratio (200 -> 128) costs 0.15-0.2 ms per frame
# here, as much as the model's inference, bilinear 0.02 ms. NEU validation accuracy:
# 99.33 % with area, 99.33-99.67 % with bilinear (two trainings, same split). Images more
# than twice the input take area instead (training.choose_interpolation).
# The shipped NEU bundle keeps its stem and first depthwise convolution in float
# (one-channel full-resolution input, where int8 kernels are slower than float).
TASK_LIST = (
    Task("images", "image",
         "defect images in class sub-folders or named <class>_<n>.jpg (NEU layout)",
         "load_images", "edge-image", "seed-neu", frozenset({"bit_depth"}), aliases=("neu",),
         image=ImageSpec(128, 128, color="gray", interpolation="linear"),
         augment=_CAMERA + ("flip", "rot90"), epochs=60, average_weights=True,
         shipped=Shipped("neu", ("neu/train", "neu"),
                         (("formats", "onnx,onnx-int8,tflite-int8"), ("float_first", 2)))),
    Task("mnist", "image", "one MNIST IDX images/labels pair (raw or .gz), digits 0-9",
         "load_digits", "edge-digits", "seed-mnist",
         image=ImageSpec(28, 28, color="gray"), augment=_DIGITS, augment_strength=0.5,
         epochs=15, batch_size=128, patience=4, shipped=Shipped("mnist", ("mnist",))),
    Task("cwru", "signal", "CWRU bearing .mat files labelled by their file names (10 classes)",
         "load_cwru", "edge-spectro", "seed-stft", RECORDING_OPTIONS,
         signal=_VIBRATION, augment=_SENSOR, epochs=30, batch_size=64, stride=512,
         shipped=Shipped("cwru", ("cwru",))),
    Task("vibration", "signal",
         "vibration recordings (.mat/.npy/.npz/.csv/.wav) labelled by a labels.csv manifest "
         "or a file-name pattern",
         "load_vibration", "edge-spectro", "seed-stft",
         RECORDING_OPTIONS | {"manifest", "label_pattern"}, signal=_VIBRATION,
         augment=_SENSOR, epochs=30, batch_size=64, follow_data_rate=True),
    # The lecture's own recipe: raw magnitude spectrogram of 10 000-sample recordings.
    Task("lecture-npz", "signal",
         "the lecture's archive of signal rows, one-hot labels and time axis",
         "load_lecture", "edge-spectro", "seed-stft",
         frozenset({"stride", "sample_rate", "allow_pickle"}), signal=SignalSpec(), epochs=20),
)
# Task name and alias -> Task
TASKS: dict[str, Task] = {name: task for task in TASK_LIST
                          for name in (task.name, *task.aliases)}
# Shipped bundle name -> Task
SHIPPED: dict[str, Task] = {t.shipped.bundle: t for t in TASK_LIST if t.shipped}


def get_task(name: str) -> Task:
    """The Task called ``name``; unknown names get close matches and the valid list."""
    if name in TASKS:
        return TASKS[name]
    raise unknown_name("task", name, TASKS, DataError)


def task_kind(name: str | None) -> str | None:
    """"image" or "signal" for a task name; None for an unknown or missing name."""
    task = TASKS.get(name or "")
    return task.kind if task else None


# ---------------------------------------------------------------------- edgecnn recipe

def _flag(name: str, value) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if value is True:
        return [flag]
    return [flag, str(value)]


def recipe_arguments(bundle: str, step: str) -> str:
    """Shell words of the ``edgecnn train`` or ``edgecnn export`` options of a shipped
    bundle's recipe (what the Makefile's bundle targets pass); ``data``: its folder inside
    a datasets root (``../shared/datasets`` layout)."""
    if bundle not in SHIPPED:
        raise unknown_name("shipped bundle", bundle, SHIPPED, DataError)
    recipe = SHIPPED[bundle].recipe()
    if step == "data":
        return recipe["data"][0]
    if step not in ("train", "export"):
        raise InputError(f"recipe step must be data, train or export; found {step!r}")
    words: list[str] = []
    for name, value in recipe[step].items():
        words += _flag(name, value)
    return shlex.join(words)


def describe_recipe(bundle: str) -> str:
    if bundle not in SHIPPED:
        raise unknown_name("shipped bundle", bundle, SHIPPED, DataError)
    task = SHIPPED[bundle]
    recipe = task.recipe()
    recipe["defaults"] = {f.name: getattr(task, f.name) for f in fields(Task)
                          if f.name in ("architecture", "augment", "augment_strength",
                                        "epochs", "batch_size", "learning_rate", "patience",
                                        "average_weights", "stride")}
    return json.dumps(recipe, indent=2, default=str)
