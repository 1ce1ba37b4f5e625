"""``edgecnn serve CONFIG``: every source of a config file in one process, unattended.

All sources run through ``run_many`` (one stepping thread, events to the shared log and
database and, with ``[mqtt]``, to the broker); SIGTERM/SIGINT stop them all cleanly and
the service exits 0 with one summary per source; when every source is a file the service
ends when they do. Log lines go to stderr, one per line, prefixed ``<N>`` (syslog
priority) when stderr is the systemd journal, so ``journalctl -p warning`` works.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

from edgecnn.deploy.errors import InputError
from edgecnn.deploy.runstats import RunSummary, StopFlag
from edgecnn.deploy.shown import shown
from edgecnn.serviceconfig import ServiceConfig, load_config

log = logging.getLogger("edgecnn.serve")
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """``<6>edgecnn.mqtt: message`` under systemd (it adds time and unit), else
    ``2025-01-01T12:00:00Z INFO edgecnn.mqtt: message``."""

    def __init__(self, journal: bool):
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        # one line each, credentials of URLs masked, control characters escaped (a
        # source named "...\n<2>forged" would forge a journal line and its priority)
        message = shown(record.getMessage().replace("\n", " "))
        if self.journal:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{record.name}: {message}"
        from edgecnn.deploy.events import utc_now

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
        state = {"start": "began", "end": "ended"}.get(event.get("state"), "")
        detail = f": {event['detail']}" if event.get("detail") else ""
        lasted = (f" after {event['duration_s']:.1f} s"
                  if isinstance(event.get("duration_s"), (int, float)) else "")
        return (f"fault {event['fault']}{' ' + state if state else ''} at {unit} {where}"
                f"{lasted}{detail} (id {event.get('id')})")
    tile = f" tile {event['tile']}" if "tile" in event else ""
    return (f"defect {event['class']} confidence {event['confidence']:.3f} at {unit} "
            f"{where}{tile} (id {event.get('id')})")


def _check_storage(config: ServiceConfig) -> None:
    """The event log, the SQLite store and the summary JSON probed as the service's start
    would open them (another program's file, a read-only or missing mount: refused here,
    in ExecStartPre, rather than in a restart loop), without writing to them: a check run
    beside the running service leaves its files alone."""
    from edgecnn.deploy.events import probe_writable
    from edgecnn.deploy.run import probe_sinks

    logging = config.logging
    try:
        probe_sinks(logging)
        if logging.json_path is not None:
            probe_writable(Path(logging.json_path), "--json")
    except InputError as exc:
        raise type(exc)(f"{config.path}: [run]: {exc}") from None


def check(config: ServiceConfig) -> list[str]:
    """Open every bundle and model, check it fits its source kind and that the classes
    named in thresholds and ignore lists exist; one line per source."""
    from edgecnn.deploy.decisions import Debouncer
    from edgecnn.deploy.engine import open_for_run
    from edgecnn.deploy.hosts import would_time

    if config.mqtt is not None:
        from edgecnn.deploy.mqtt import require_paho

        require_paho()
    _http_options(config)    # a bad address or a missing token: refused before the start
    _check_shared_snapshots(config)
    _check_storage(config)
    lines = []
    for number, (bundle_name, plan) in enumerate(config.sources):
        name = plan.source.name
        try:
            bundle, _, entry = open_for_run(_open_bundle(config, bundle_name),
                                            "image" if plan.kind == "camera" else "signal",
                                            plan.model.fmt, plan.model.engine,
                                            measure=False)   # a check runs nothing
            d = plan.decisions
            Debouncer(bundle.labels, d.count_for(plan.kind), d.threshold,
                      d.class_thresholds, d.ignore_classes)
        except InputError as exc:
            d, text = plan.decisions, str(exc)
            if "trusted key" in text:    # the service's keys, not this source's bundle
                where = "[run] key 'trusted_key'" if config.trusted_keys else \
                    "the trusted key of EDGECNN_TRUSTED_KEYS"
                raise type(exc)(f"{config.path}: {where}: {exc}") from None
            key = "ignore_class" if any(repr(c) in text for c in d.ignore_classes) else \
                "class_threshold" if d.class_thresholds and "class name" in text else \
                "format" if plan.model.fmt and "model" in text else "bundle"
            raise type(exc)(f"{config.where(number, key)} ({name}): {exc}") from None
        timed = plan.model.fmt is None and would_time(bundle, plan.model.engine.threads)
        lines.append(f"{name}: {plan.kind} {shown(plan.source.source)} -> {bundle.path} "
                     f"[{entry.get('format')}"
                     f"{'; the first start times its formats' if timed else ''}]")
    return lines


def _check_shared_snapshots(config: ServiceConfig) -> None:
    """Cameras that share a snapshot folder share its limits (``snapshots.shared_store``):
    other limits for the same folder are refused here, before the start."""
    seen: dict[str, tuple] = {}
    for number, (_, plan) in enumerate(config.sources):
        folder = getattr(plan.source, "snapshots", None)
        if folder is None or not isinstance(folder, (str, os.PathLike)):
            continue
        limits = (plan.source.snapshots_max_mb, plan.source.snapshots_keep_days)
        first = seen.setdefault(os.path.realpath(folder), limits)
        if first != limits:
            raise InputError(f"{config.where(number, 'snapshots')} ({plan.source.name}): "
                             f"snapshot folder {folder} is shared by cameras with other limits "
                             f"({first[0]} MB / {first[1]} days against {limits[0]} MB / "
                             f"{limits[1]} days): give them one set of limits, or each "
                             "camera its own folder")


def _http_options(config: ServiceConfig):
    """The live view of the ``[http]`` table (``listen``, ``token``), checked."""
    if config.http is None:
        return None
    from edgecnn.deploy.httpview import HttpOptions

    http = HttpOptions(config.http.get("listen", HttpOptions.listen), config.http.get("token"))
    try:
        http.address()
    except InputError as exc:
        raise InputError(f"{config.path} [http]: {exc}") from None
    return http


def _open_bundle(config: ServiceConfig, name: str):
    """A source's bundle, under the service's trusted keys ([run] trusted_key, plus
    EDGECNN_TRUSTED_KEYS)."""
    from edgecnn.deploy.bundle import Bundle
    from edgecnn.deploy.signing import Trust

    return Bundle.open(name, Trust.resolve(config.trusted_keys))


def serve(path, *, check_only: bool = False,
          echo: Callable[[str], None] = print) -> list[RunSummary] | list[str]:
    """Run (or with ``check_only`` only check) the service config at ``path``."""
    from edgecnn.deploy.multi import run_many

    config = load_config(path)
    lines = check(config)
    if check_only:
        return lines
    for line in lines:
        log.info("source %s", line)
    stop = StopFlag()
    sources = [(_open_bundle(config, bundle), plan) for bundle, plan in config.sources]
    with ExitStack() as stack:
        sinks = []
        if config.mqtt is not None:
            from edgecnn.deploy.mqtt import MqttSinks

            sinks.append(stack.enter_context(MqttSinks(config.mqtt)))

        def on_event(event: dict) -> None:
            logging.getLogger(f"edgecnn.{event.get('source')}").info(event_line(event))

        summaries = run_many(sources, config.logging, stop=stop, on_event=on_event,
                             sinks=sinks, http=_http_options(config),
                             on_http=lambda url: log.info("live view: %s", url),
                             keep_waiting=True)
    for summary in summaries:
        log.info("stopped %s (%s): %s processed, events %s", summary.source,
                 summary.stop_reason, summary.processed, summary.events or "none")
        echo(summary.format())
    if config.logging.json_path:
        try:
            Path(config.logging.json_path).write_text(
                json.dumps({"sources": [s.to_dict() for s in summaries]}, indent=2,
                           sort_keys=True) + "\n",
                encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {config.logging.json_path}: {exc.strerror}") \
                from None
    return summaries
