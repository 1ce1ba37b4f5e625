"""One line-side run with its sinks: what ``edgecnn run camera|vibration`` calls.

Opens the event log (and SQLite copy), turns SIGINT/SIGTERM into a clean stop, runs the
camera or vibration pipeline, closes the sinks whatever happens, and writes the summary
JSON. Kept apart from the pipelines so they stay usable as plain library functions.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

from .errors import InputError, StorageError
from .events import EventLog, SqliteSink
from .runstats import RunSummary, StopFlag, stop_on_signals
from .snapshots import SnapshotStore
from .storage import StorageGuard, StorageOptions


def format_event(event: dict) -> str:
    """One short human line per event (the log itself holds the full JSON)."""
    where = event.get("frame", event.get("window"))
    unit = "frame" if "frame" in event else "window"
    if event.get("type") == "fault":
        at = f" {unit} {where}" if where is not None else ""
        return f"{event['time']}  FAULT {event['fault']:<12}{at}" + \
            (f"  {event['message']}" if "message" in event else "")
    tile = f" tile {event['tile']}" if "tile" in event else ""
    region = event.get("region")
    place = f" at {region}" if region is not None and unit == "frame" else \
        f" at {event.get('start_s')} s"
    extra = " (clipped)" if event.get("clipped") else ""
    return (f"{event['time']}  {event['class']:<16} {event['confidence']:.3f}  "
            f"{unit} {where}{tile}{place}{extra}")


def run_logged(kind: str, bundle, source, *, log=None, sqlite=None, fsync: str = "interval",
               rotate_mb: float | None = None, json_path=None,
               echo: Callable[[str], None] | None = None, **options) -> RunSummary:
    """Run ``kind`` ("camera" or "vibration") with sinks; returns the summary.

    Storage options (``on_storage_error``, ``sqlite_keep_days``, ``snapshots_max_mb``,
    ``snapshots_keep_days``: see ``storage.StorageOptions``) are taken out of ``options``.
    """
    from .camera import run_camera
    from .vibration import run_vibration

    if kind not in ("camera", "vibration"):
        raise InputError(f"run kind must be camera or vibration; found {kind!r}")
    if rotate_mb is not None and rotate_mb <= 0:
        raise InputError(f"--rotate-mb must be positive; found {rotate_mb}")
    pipeline = run_camera if kind == "camera" else run_vibration
    storage = StorageOptions.from_options(options)
    if options.get("snapshots") is None and (storage.snapshots_max_mb or
                                             storage.snapshots_keep_days):
        raise InputError("--snapshots-max-mb and --snapshots-keep-days need --snapshots")
    stop = StopFlag()
    with ExitStack() as stack:
        sinks = []
        if log is not None:
            sinks.append(stack.enter_context(EventLog(
                log, fsync=fsync,
                rotate_bytes=int(rotate_mb * 1024 * 1024) if rotate_mb else None,
                **storage.sink_args())))
        if sqlite is not None:
            sinks.append(stack.enter_context(SqliteSink(
                sqlite, keep_days=storage.sqlite_keep_days, **storage.sink_args())))
        snapshots = None
        if options.get("snapshots") is not None:
            snapshots = options["snapshots"] = SnapshotStore(
                options["snapshots"], storage.snapshots_max_mb, storage.snapshots_keep_days)
        stack.enter_context(stop_on_signals(stop))
        on_event = (lambda event: echo(format_event(event))) if echo else None
        guard = StorageGuard(sinks, [snapshots], storage.on_error, stop, on_event)
        stack.callback(guard.close)      # before the sinks close: a last retry
        summary = pipeline(bundle, source, sinks=[guard], stop=stop, on_event=on_event,
                           **options)
    if log is not None:
        summary.extra["log"] = str(log)
    summary.extra.update(guard.report())
    if json_path:
        try:
            Path(json_path).write_text(summary.to_json() + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {json_path}: {exc.strerror}") from None
    if guard.failure:
        raise StorageError(f"{guard.failure}; run stopped (--on-storage-error stop), "
                           f"{guard.unstored} event(s) not stored")
    return summary


def summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=2, sort_keys=True)
