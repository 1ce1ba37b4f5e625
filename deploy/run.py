"""One line-side run with its sinks: what ``edgecnn run camera|vibration`` calls.

Opens the event log (and SQLite copy) that ``Logging`` names, turns SIGINT/SIGTERM into a
clean stop, runs the camera or vibration pipeline of a ``RunPlan``, closes the sinks
whatever happens, and writes the summary JSON. Kept apart from the pipelines so they stay
usable as plain library functions.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

from .errors import InputError
from .events import EventLog, SqliteSink
from .options import Logging, RunPlan
from .runstats import RunSummary


def format_event(event: dict) -> str:
    """One short human line per event (the log itself holds the full JSON)."""
    where = event.get("frame", event.get("window"))
    unit = "frame" if "frame" in event else "window"
    if event.get("type") == "fault":
        return f"{event['time']}  FAULT {event['fault']:<12} {unit} {where}"
    tile = f" tile {event['tile']}" if "tile" in event else ""
    region = event.get("region")
    place = f" at {region}" if region is not None and unit == "frame" else \
        f" at {event.get('start_s')} s"
    extra = " (clipped)" if event.get("clipped") else ""
    return (f"{event['time']}  {event['class']:<16} {event['confidence']:.3f}  "
            f"{unit} {where}{tile}{place}{extra}")


def run_logged(bundle, plan: RunPlan, logging: Logging = Logging(), *,
               echo: Callable[[str], None] | None = None, sinks=()) -> RunSummary:
    """Run one source's ``plan`` with the sinks ``logging`` names (and the extra ``sinks``
    of ``run_many``); returns the summary."""
    from .multi import run_many

    on_event = (lambda event: echo(format_event(event))) if echo else None
    summary, = run_many([(bundle, plan)], logging, on_event=on_event, sinks=sinks)
    if logging.log is not None:
        summary.extra["log"] = str(logging.log)
    if logging.json_path:
        try:
            Path(logging.json_path).write_text(summary.to_json() + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {logging.json_path}: {exc.strerror}") from None
    return summary


def open_sinks(logging: Logging, stack: ExitStack) -> list:
    """The event sinks ``logging`` asks for, closed when ``stack`` closes."""
    sinks = []
    if logging.log is not None:
        rotate = int(logging.rotate_mb * 1024 * 1024) if logging.rotate_mb else None
        sinks.append(stack.enter_context(EventLog(logging.log, fsync=logging.fsync,
                                                  rotate_bytes=rotate)))
    if logging.sqlite is not None:
        sinks.append(stack.enter_context(SqliteSink(logging.sqlite)))
    return sinks


def summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=2, sort_keys=True)
