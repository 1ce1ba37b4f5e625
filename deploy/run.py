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
from typing import Callable, Sequence

from .errors import InputError, StorageError
from .events import EventLog, SqliteSink, probe_log, probe_sqlite
from .options import Logging, RunPlan
from .runstats import RunSummary
from .shown import shown
from .storage import StorageGuard


def format_event(event: dict, source: bool = False) -> str:
    """One short human line per event (the log itself holds the full JSON); ``source``
    starts it with the source's name (a run of several sources)."""
    if source:   # names and details on one line, whatever they hold (a file name's \n)
        return f"[{shown(event.get('source'))}] {format_event(event)}"
    where = event.get("frame", event.get("window"))
    unit = "frame" if "frame" in event else "window"
    if event.get("type") == "fault" and event.get("fault") == "storage":
        return f"{event['time']}  FAULT storage      {shown(event.get('message', ''))}"
    if event.get("type") == "fault":
        state = f" {event['state']}" if "state" in event else ""   # stalled start/end...
        detail = f" ({shown(event['detail'])})" if "detail" in event else ""
        return f"{event['time']}  FAULT {event['fault']:<12} {unit} {where}{state}{detail}"
    tile = f" tile {event['tile']}" if "tile" in event else ""
    region = event.get("region")
    place = f" at {region}" if region is not None and unit == "frame" else \
        f" at {event.get('start_s')} s"
    extra = " (clipped)" if event.get("clipped") else ""
    return (f"{event['time']}  {event['class']:<16} {event['confidence']:.3f}  "
            f"{unit} {where}{tile}{place}{extra}")


def run_logged(bundle, plan: RunPlan, logging: Logging = Logging(), *,
               echo: Callable[[str], None] | None = None, http=None,
               sinks=()) -> RunSummary:
    """Run one source's ``plan`` with the sinks ``logging`` names (and the extra ``sinks``
    of ``run_many``); returns the summary."""
    summary, = run_logged_many([(bundle, plan)], logging, echo=echo, http=http, sinks=sinks)
    return summary


def run_logged_many(sources: Sequence[tuple[object, RunPlan]], logging: Logging = Logging(),
                    *, echo: Callable[[str], None] | None = None,
                    http=None, sinks=()) -> list[RunSummary]:
    """Run every (bundle, plan) of ``sources`` in this process (``multi.run_many``) with
    the sinks ``logging`` names and the live page ``http`` asks for; one summary per
    source. The summary JSON holds the one summary of a single source, or
    ``{"sources": [summary, ...]}`` of several."""
    from .multi import run_many

    several = len(sources) > 1
    on_event = (lambda event: echo(format_event(event, several))) if echo else None
    on_http = (lambda url: echo(f"live view: {url}")) if echo else None
    try:
        summaries = run_many(sources, logging, on_event=on_event, http=http,
                             on_http=on_http, sinks=sinks)
    except StorageError as exc:      # --on-storage-error stop: the summary still says why
        stopped = getattr(exc, "summaries", None)
        if stopped and logging.json_path:
            try:
                _write_summaries(stopped, logging)
            except InputError:
                pass                 # its disk is full too: the storage error says enough
        raise
    _write_summaries(summaries, logging)
    return summaries


def _write_summaries(summaries: list[RunSummary], logging: Logging) -> None:
    """The log's name into each summary; the summary JSON (``--json``) when asked: the
    one summary of a single source, or ``{"sources": [...]}`` of several."""
    for summary in summaries:
        if logging.log is not None:
            summary.extra["log"] = str(logging.log)
    if logging.json_path:
        data = {"sources": [s.to_dict() for s in summaries]} if len(summaries) > 1 \
            else summaries[0].to_dict()
        try:
            Path(logging.json_path).write_text(json.dumps(data, indent=2, sort_keys=True)
                                               + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {logging.json_path}: {exc.strerror}") from None


def open_sinks(logging: Logging, stack: ExitStack, stop=None, on_fault=None,
               opened: list | None = None) -> StorageGuard:
    """The event sinks ``logging`` asks for behind one ``StorageGuard`` (storage faults,
    backlog, stop policy), all closed when ``stack`` closes -- the guard first, for a last
    retry. ``opened`` gets the path of each sink as soon as it is open (also when a later
    one then fails)."""
    storage = logging.storage
    sinks = []
    if logging.log is not None:
        rotate = int(logging.rotate_mb * 1024 * 1024) if logging.rotate_mb else None
        sinks.append(stack.enter_context(EventLog(logging.log, fsync=logging.fsync,
                                                  rotate_bytes=rotate,
                                                  **storage.sink_args())))
        if opened is not None:
            opened.append(Path(logging.log))
    if logging.sqlite is not None:
        sinks.append(stack.enter_context(SqliteSink(
            logging.sqlite, keep_days=storage.sqlite_keep_days, **storage.sink_args())))
        if opened is not None:
            opened.append(Path(logging.sqlite))
    guard = StorageGuard(sinks, [], storage.on_error, stop, on_fault)
    stack.callback(guard.close)
    return guard



def probe_sinks(logging: Logging) -> None:
    """What ``open_sinks`` would refuse (another program's file, a read-only or missing
    mount), found without opening anything for writing: a service running on these files
    keeps them to itself, and nothing is created, locked or repaired."""
    if logging.log is not None:
        probe_log(logging.log)
    if logging.sqlite is not None:
        probe_sqlite(logging.sqlite)

def summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=2, sort_keys=True)
