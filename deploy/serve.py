"""``edgecnn serve CONFIG``: every source of a config file in one process, unattended.

All sources run through ``run_many`` (one stepping thread, events to the shared log and
database and, with ``[mqtt]``, to the broker); SIGTERM/SIGINT stop them all cleanly and
the service exits 0 with one summary per source; when every source is a file the service
ends when they do. Log lines go to stderr, one per line, prefixed ``<N>`` (syslog
priority) when stderr is the systemd journal, so ``journalctl -p warning`` works.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

from .config import ServiceConfig, load_config
from .errors import InputError
from .runstats import RunSummary, StopFlag

log = logging.getLogger("edgecnn.serve")
# [http]: ``start_http(table, stop=StopFlag)`` of this module gives a context manager whose
# value is a run_many sink (write(event); watch(loop) for each source's live status)
HTTP_MODULE = "edgecnn.deploy.liveview"
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """``<6>edgecnn.mqtt: message`` under systemd (it adds time and unit), else
    ``2025-01-01T12:00:00Z INFO edgecnn.mqtt: message``."""

    def __init__(self, journal: bool):
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", " ")
        if self.journal:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{record.name}: {message}"
        from .events import utc_now

        return f"{utc_now()} {record.levelname} {record.name}: {message}"


def setup_logging(stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JournalFormatter(bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger("edgecnn")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def event_line(event: dict) -> str:
    """One line per event for the journal."""
    where = event.get("frame", event.get("window"))
    unit = "frame" if "frame" in event else "window"
    if event.get("type") == "fault":
        return f"fault {event['fault']} at {unit} {where} (id {event.get('id')})"
    tile = f" tile {event['tile']}" if "tile" in event else ""
    return (f"defect {event['class']} confidence {event['confidence']:.3f} at {unit} "
            f"{where}{tile} (id {event.get('id')})")


def check(config: ServiceConfig) -> list[str]:
    """Open every bundle and model, check it fits its source kind and that the classes
    named in thresholds and ignore lists exist; one line per source."""
    from .decisions import Debouncer
    from .engine import open_for_run

    if config.mqtt is not None:
        from .mqtt import require_paho

        require_paho()
    if config.http is not None and importlib.util.find_spec(HTTP_MODULE) is None:
        raise InputError(f"{config.path}: [http] needs the live view ({HTTP_MODULE}), "
                         "which this edgecnn does not have")
    lines = []
    for number, (bundle_name, plan) in enumerate(config.sources):
        name = plan.source.name
        try:
            bundle, _, entry = open_for_run(bundle_name, "image" if plan.kind == "camera"
                                            else "signal", plan.model.fmt, plan.model.engine)
            d = plan.decisions
            Debouncer(bundle.labels, d.count_for(plan.kind), d.threshold,
                      d.class_thresholds, d.ignore_classes)
        except InputError as exc:
            d, text = plan.decisions, str(exc)
            key = "ignore_class" if any(repr(c) in text for c in d.ignore_classes) else \
                "class_threshold" if d.class_thresholds and "class name" in text else \
                "format" if plan.model.fmt and "model" in text else "bundle"
            raise type(exc)(f"{config.where(number, key)} ({name}): {exc}") from None
        lines.append(f"{name}: {plan.kind} {plan.source.source} -> {bundle.path} "
                     f"[{entry.get('format')}]")
    return lines


def _http(config: ServiceConfig, stack: ExitStack, stop: StopFlag):
    """The live view of the ``[http]`` table, if this build has it; a hook for run_many."""
    if config.http is None:
        return []
    module = importlib.import_module(HTTP_MODULE)
    return [stack.enter_context(module.start_http(dict(config.http), stop=stop))]


def serve(path, *, check_only: bool = False,
          echo: Callable[[str], None] = print) -> list[RunSummary] | list[str]:
    """Run (or with ``check_only`` only check) the service config at ``path``."""
    from .multi import run_many

    config = load_config(path)
    lines = check(config)
    if check_only:
        return lines
    for line in lines:
        log.info("source %s", line)
    stop = StopFlag()
    with ExitStack() as stack:
        sinks = _http(config, stack, stop)
        if config.mqtt is not None:
            from .mqtt import MqttSinks

            sinks.append(stack.enter_context(MqttSinks(config.mqtt)))

        def on_event(event: dict) -> None:
            logging.getLogger(f"edgecnn.{event.get('source')}").info(event_line(event))

        summaries = run_many(config.sources, config.logging, stop=stop, on_event=on_event,
                             sinks=sinks)
    for summary in summaries:
        log.info("stopped %s (%s): %s processed, events %s", summary.source,
                 summary.stop_reason, summary.processed, summary.events or "none")
        echo(summary.format())
    if config.logging.json_path:
        try:
            Path(config.logging.json_path).write_text(
                json.dumps([s.to_dict() for s in summaries], indent=2, sort_keys=True) + "\n",
                encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {config.logging.json_path}: {exc.strerror}") \
                from None
    return summaries
