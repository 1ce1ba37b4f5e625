"""What a line-side run is told, as typed groups that travel from the CLI (or a config
file) to the pipelines unchanged.

Which model runs (``ModelOptions``), how probabilities become events (``Decisions``), when
the run ends (``Limits``), where events go (``Logging``) and, per source, what is read and
how (``CameraSource`` / ``VibrationSource``). ``RunPlan`` holds one source's groups.
The library functions ``run_camera`` / ``run_vibration`` also take the same settings as
flat keywords; ``plan_from_keywords`` is the one place that sorts them into the groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .engine import EngineOptions
from .errors import InputError
from .faults import FaultConfig
from .reconnect import Backoff
from .spec import sample_rate_problem
from .storage import StorageOptions
from .tiles import Region

RUN_KINDS = ("camera", "vibration")
# Consecutive frames (windows) a class must persist before it is an event.
DEFAULT_MIN_COUNT = {"camera": 3, "vibration": 1}
DEFAULT_THRESHOLD = 0.6


@dataclass(frozen=True)
class ModelOptions:
    fmt: str | None = None                     # bundle format (default: the bundle's)
    engine: EngineOptions = EngineOptions()


@dataclass(frozen=True)
class Decisions:
    """Thresholds, ignored classes and debounce (see ``decisions.Debouncer``)."""

    min_count: int | None = None               # None: DEFAULT_MIN_COUNT of the run kind
    threshold: float = DEFAULT_THRESHOLD
    class_thresholds: Mapping[str, float] = field(default_factory=dict)
    ignore_classes: tuple[str, ...] = ()
    probabilities: bool = False                # store every class probability in events

    def __post_init__(self) -> None:
        # checked where the plan is made, naming the option (the service config's key
        # comes from it), so --check refuses what the run would
        if self.min_count is not None and (not isinstance(self.min_count, int) or
                                           isinstance(self.min_count, bool) or
                                           self.min_count < 1):
            raise InputError(f"--min-frames / --min-windows must be a whole number >= 1; "
                             f"found {self.min_count!r}")
        if not isinstance(self.threshold, (int, float)) or not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"--threshold must be a confidence in [0, 1]; found "
                             f"{self.threshold!r}")

    def count_for(self, kind: str) -> int:
        return DEFAULT_MIN_COUNT[kind] if self.min_count is None else self.min_count


@dataclass(frozen=True)
class Limits:
    duration: float | None = None              # seconds of wall time
    max_items: int | None = None               # frames read / windows completed

    def __post_init__(self) -> None:
        if self.duration is not None and not 0 < self.duration < math.inf:
            raise InputError(f"--duration must be a positive number of seconds; found "
                             f"{self.duration}")
        if self.max_items is not None and self.max_items < 1:
            raise InputError(f"--max-frames / --max-windows must be >= 1; found "
                             f"{self.max_items}")


MIN_ROTATE_MB = 0.001      # 1 kB: smaller logs would rotate at every event


@dataclass(frozen=True)
class Logging:
    """The run's sinks: JSON Lines log, SQLite copy, summary JSON."""

    log: str | None = None
    sqlite: str | None = None
    fsync: str = "interval"
    rotate_mb: float | None = None
    json_path: str | None = None
    storage: StorageOptions = StorageOptions()   # full disks: backlog, stop policy, retention

    def __post_init__(self) -> None:
        if self.rotate_mb is not None and not MIN_ROTATE_MB <= self.rotate_mb < math.inf:
            raise InputError(f"--rotate-mb must be a number of megabytes from {MIN_ROTATE_MB}; "
                             f"found {self.rotate_mb}")
        named = [(flag, value) for flag, value in (("--log", self.log),
                                                   ("--sqlite", self.sqlite),
                                                   ("--json", self.json_path)) if value]
        for i, (flag, value) in enumerate(named):   # one file for two jobs: one would win
            for other, second in named[i + 1:]:
                if _same_file(value, second):
                    raise InputError(f"{flag} and {other} name the same file {value}: give "
                                     "each its own")
        if self.json_path:
            refuse_replacing_events(self.json_path, "--json")


def _same_file(a: str, b: str) -> bool:
    from pathlib import Path

    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):
        return a == b


def refuse_replacing_events(path, flag: str) -> None:
    """A summary written over an event log or an SQLite store would lose its events:
    refused before anything runs (a --json that names a run's log by mistake)."""
    from pathlib import Path

    from .events import parse_event_line

    target = Path(path)
    try:
        if not target.is_file() or target.stat().st_size == 0:
            return
        with open(target, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return                           # unreadable: the write itself will say why
    if head.startswith(b"SQLite format 3\0"):
        kind = "an SQLite database"
    elif parse_event_line(head.lstrip().split(b"\n", 1)[0]) is not None:
        # (a summary is indented over many lines: its first line is no whole event)
        kind = "an event log (JSON Lines)"
    else:
        return
    raise InputError(f"{flag} {path} is {kind}: it would be replaced by the summary; give "
                     "the summary a file of its own")


@dataclass(frozen=True)
class CameraSource:
    source: Any                                # what open_frame_source takes, or a FrameSource
    roi: Region | None = None
    tiles: tuple[int, int] | None = None
    grid: tuple[int, int, int] | None = None
    realtime: bool = False
    faults: FaultConfig = FaultConfig()
    snapshots: Any = None                      # a folder, or a snapshots.SnapshotStore
    snapshots_max_mb: float | None = None      # retention of that folder
    snapshots_keep_days: float | None = None
    show: bool = False
    backoff: Backoff = Backoff()
    name: str | None = None                    # the source's name in events (default: as read)

    def __post_init__(self) -> None:
        if self.tiles and self.grid:
            raise InputError("give either --tiles or --grid, not both")
        from .storage import check_retention

        check_retention("--snapshots-max-mb", self.snapshots_max_mb, "MB")
        check_retention("--snapshots-keep-days", self.snapshots_keep_days, "days")
        if self.snapshots is None and (self.snapshots_max_mb or self.snapshots_keep_days):
            raise InputError("--snapshots-max-mb and --snapshots-keep-days need --snapshots")


@dataclass(frozen=True)
class VibrationSource:
    source: Any                                # a path, '-', tcp://host:port or a SampleSource
    hop: int | None = None
    sample_rate: float | None = None           # of a stream, or of a file without one
    channel: str | None = None                 # None: the model's channel
    realtime: bool = False
    checks: Any = None                         # vibration.SignalChecks (None: defaults)
    backoff: Backoff = Backoff()
    name: str | None = None                    # the source's name in events (default: as read)

    def __post_init__(self) -> None:
        if self.hop is not None and (not isinstance(self.hop, int) or self.hop < 1):
            raise InputError(f"--hop must be a whole number of samples >= 1; found {self.hop!r}")
        if self.sample_rate is not None and (
                why := sample_rate_problem(self.sample_rate)) is not None:
            raise InputError(f"--sample-rate: {why}")
        if isinstance(self.source, str) and not self.source.strip():
            raise InputError("--source is empty: expected a recording, '-' or tcp://host:port")


@dataclass(frozen=True)
class RunPlan:
    """Everything one source's run needs besides the bundle and the sinks."""

    kind: str
    source: CameraSource | VibrationSource
    model: ModelOptions = ModelOptions()
    decisions: Decisions = Decisions()
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        if self.kind not in RUN_KINDS:
            raise InputError(f"run kind must be camera or vibration; found {self.kind!r}")


# flat keyword -> (group, field) where the names differ
_RENAMED = {"fmt": ("model", "fmt"), "options": ("model", "engine"),
            "min_frames": ("decisions", "min_count"), "min_windows": ("decisions", "min_count"),
            "max_frames": ("limits", "max_items"), "max_windows": ("limits", "max_items")}


def plan_from_keywords(kind: str, source, **keywords) -> RunPlan:
    """A RunPlan from the flat keywords of ``run_camera`` / ``run_vibration``; a keyword
    that belongs to no group is refused rather than ignored."""
    source_type = CameraSource if kind == "camera" else VibrationSource
    groups: dict[str, dict] = {"model": {}, "decisions": {}, "limits": {}, "source": {}}
    owners = {"decisions": Decisions, "limits": Limits, "source": source_type}
    for name, value in keywords.items():
        if name in _RENAMED:
            group, target = _RENAMED[name]
        else:
            group = next((g for g, cls in owners.items()
                          if name in {f.name for f in fields(cls)}), None)
            target = name
            if group is None:
                raise InputError(f"unknown {kind} run option {name!r}")
        if name == "class_thresholds":
            value = dict(value or {})
        if name == "ignore_classes":
            value = tuple(value)
        groups[group][target] = value
    return RunPlan(kind, source_type(source, **groups["source"]),
                   ModelOptions(**groups["model"]), Decisions(**groups["decisions"]),
                   Limits(**groups["limits"]))
