"""What run_all.py trains per task: our edge recipe and the lecture's ``seed-*`` recipe.

Both models of a task see the same samples, the same validation split (same seed, same
fraction; signal windows of the same length and stride) and are benched in the same run.
The edge model uses the task defaults of ``edgecnn.tasks``; the seed model the lecture's
setting: its architecture at the input size the lecture used, 10 epochs, no augmentation,
Adam at Keras's default learning rate (edgecnn.training adds its cosine decay to both).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from edgecnn.deploy.errors import DataError
from edgecnn.tasks import SHIPPED, get_task

# The tasks with a shipped bundle; their data folders and export options come from the
# task table (``edgecnn recipe``), as ``make bundle-<task>`` uses them.
TASKS = tuple(SHIPPED)
LECTURE_EPOCHS = 10
LECTURE_LEARNING_RATE = 1e-3  # keras.optimizers.Adam() default


@dataclass(frozen=True)
class Recipe:
    """Training settings of one benchmarked model (None = the task default)."""

    role: str                        # "edge" (ours) or "seed" (the lecture's)
    task: str
    architecture: str
    epochs: int
    augment: bool = True
    image_size: int | None = None
    transform: str | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    note: str = ""
    # options of edgecnn.export.export_model, as the shipped bundle of the task uses them
    export: tuple[tuple[str, object], ...] = ()

    def scaled(self, factor: float) -> "Recipe":
        return replace(self, epochs=max(1, int(round(self.epochs * factor))))

    def train_options(self) -> dict:
        """Keyword arguments of ``edgecnn.training.TrainConfig`` for this recipe."""
        options = {"architecture": self.architecture, "epochs": self.epochs,
                   "augment": self.augment}
        for name in ("image_size", "transform", "batch_size", "learning_rate"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        return options


def recipes(task: str) -> tuple[Recipe, Recipe]:
    """(edge, seed) recipes of a task."""
    defaults = get_task(task)
    # the shipped bundle's export options, its format list aside (the benchmark benches
    # every format)
    export = tuple((k, v) for k, v in defaults.shipped.export if k != "formats")
    edge = Recipe("edge", task, defaults.architecture, defaults.epochs,
                  note="edgecnn task defaults (architecture, input size, augmentation, "
                       "learning rate, early stopping)", export=export)
    seed = {
        # The lecture trained its 3-block CNN on the full 200x200 NEU images for 10 epochs.
        "neu": dict(image_size=200, note="lecture: 200x200 input, 10 epochs, no augmentation"),
        # Native 28x28 digits; the task's batch size keeps 48k images per epoch affordable.
        "mnist": dict(note="lecture: 28x28 input, 10 epochs, no augmentation"),
        # Raw magnitude spectrogram as in the lecture, on the same 4096-sample windows as the
        # edge model (the split is per window, so the window length must match).
        "cwru": dict(transform="none",
                     note="lecture: raw magnitude spectrogram (no log), 10 epochs, "
                          "no augmentation; same windows as the edge model"),
    }[task]
    return edge, Recipe("seed", task, defaults.seed_architecture, LECTURE_EPOCHS,
                        augment=False, learning_rate=LECTURE_LEARNING_RATE, **seed)


def task_data(root: Path, task: str) -> Path:
    """The folder of ``task`` inside a datasets root (``../shared/datasets`` layout)."""
    root = Path(root)
    folders = SHIPPED[task].shipped.data
    for folder in folders:
        if (root / folder).is_dir():
            return root / folder
    expected = " or ".join(f"{root / f}" for f in folders)
    raise DataError(f"no {task} data under {root}: expected {expected}")


def parse_tasks(text: str) -> list[str]:
    tasks = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise DataError(f"unknown task(s) {', '.join(unknown) or '(none)'}; "
                        f"choose from {', '.join(TASKS)}")
    return tasks
