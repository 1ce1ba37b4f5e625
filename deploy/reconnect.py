"""How a live source waits and retries, and how it reports that it is down or silent.

``Backoff`` holds the delays between connection attempts, how long the first connection
may take (``connect_timeout``) and how long a connected source may stay silent before it
counts as stalled (``stall_seconds``). ``StatusLog`` is the small thread-safe queue of
state changes (stalled / disconnected started or ended, realigned) that every source
exposes as ``poll_status()`` and the run loops turn into fault events.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from .errors import InputError
from .shown import shown

DEFAULT_CONNECT_TIMEOUT = 60.0   # seconds a live source may take to come up (files: none)
DEFAULT_STALL_SECONDS = 5.0      # connected but silent this long -> a "stalled" fault
STATUS_FAULTS = ("stalled", "disconnected", "realigned")


@dataclass(frozen=True)
class Backoff:
    """Delays between (re)connect attempts: initial, doubling up to maximum (seconds);
    ``connect_timeout``: how long the first connection of a live source is retried before
    the run fails (0: one attempt); ``stall_seconds``: silence that makes a connected
    source "stalled"."""

    initial: float = 0.5
    maximum: float = 30.0
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    stall_seconds: float = DEFAULT_STALL_SECONDS
    # seconds the very first attempt to open a stream may take (None: OpenCV's open
    # timeout); a run of several sources keeps it short, the source is then waited for
    first_open: float | None = None

    def __post_init__(self) -> None:
        # NaN fails every comparison: written so that it is refused (inf waits forever)
        if not (self.connect_timeout >= 0 and 0 < self.stall_seconds < math.inf):
            raise InputError(f"--connect-timeout must be >= 0 and --stall-seconds positive; "
                             f"found {self.connect_timeout} and {self.stall_seconds}")

    def delays(self):
        delay = self.initial
        while True:
            yield delay
            delay = min(self.maximum, delay * 2)


def connect_with_backoff(connect, backoff: Backoff, stop=None):
    """``connect()`` until it returns, retrying a SourceError with ``backoff`` for up to
    ``backoff.connect_timeout`` seconds in total; then the last error is raised, saying how
    many attempts were made over how long. ``stop`` (an Event-like ``wait(s)``) ends the
    wait early."""
    from .errors import ConnectTimeout, SourceError, StoppedWaiting

    started = time.monotonic()
    delays = backoff.delays()
    attempts = 0
    while True:
        attempts += 1
        try:
            return connect()
        except SourceError as exc:
            waited = time.monotonic() - started
            delay = next(delays)
            left = backoff.connect_timeout - waited
            tried = ("1 attempt" if attempts == 1 else
                     f"{attempts} attempts over {waited:.1f} s")
            if stop is not None and stop.is_set():
                raise StoppedWaiting(f"{exc} (stopped while waiting: {tried})") from None
            if left <= 0:
                limit = (f"; --connect-timeout {backoff.connect_timeout:g} s"
                         if backoff.connect_timeout > 0 else "")
                raise ConnectTimeout(f"{exc} ({tried}{limit})") from None
            if attempts == 1:
                import sys
                until = ("until it comes up" if backoff.connect_timeout >= 1e8 else
                         f"for up to {backoff.connect_timeout:g} s")
                print(f"edgecnn: waiting for the source: {shown(exc)}; retrying {until}",
                      file=sys.stderr, flush=True)
            pause = min(delay, left)
            if stop is not None:
                if stop.wait(pause):
                    continue          # the next failure raises (stop is set)
            else:
                time.sleep(pause)


def check_port(url: str) -> None:
    """A URL's port, if it names one, is a number in 1..65535: a typo fails at once with
    exit 2, instead of being retried as an unreachable source for --connect-timeout."""
    from urllib.parse import urlsplit

    try:
        port = urlsplit(url).port
    except ValueError:
        raise InputError(f"{url!r}: the port should be a number from 1 to 65535") from None
    if port == 0:
        raise InputError(f"{url!r}: the port should be a number from 1 to 65535; found 0")


@dataclass(frozen=True)
class StatusChange:
    """One change of a source's state: ``fault`` (stalled | disconnected | realigned)
    ``state`` start | end (realigned: "once"), when (``time``: monotonic, ``wall``: UTC),
    ``since``: the UTC time it started (end only), ``duration_s`` (end only), ``detail``."""

    time: float
    wall: str
    fault: str
    state: str
    detail: str = ""
    since: str | None = None
    duration_s: float | None = None

    def event(self, source: str, **extra) -> dict:
        """The fault event a run loop logs for this change (``extra``: frame/window, sha)."""
        event = {"time": self.wall, "type": "fault", "source": source, "fault": self.fault,
                 "state": self.state, **extra}
        if self.since is not None:
            event["since"] = self.since
            event["duration_s"] = self.duration_s
        if self.detail:
            event["detail"] = self.detail
        return event


class StatusLog:
    """Thread-safe queue of StatusChange; remembers which faults are active since when."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changes: list[StatusChange] = []
        self._active: dict[str, tuple[float, str]] = {}   # fault -> (monotonic, wall)

    def active(self, fault: str) -> bool:
        return fault in self._active

    def start(self, fault: str, detail: str = "") -> None:
        from .events import utc_now

        with self._lock:
            if fault in self._active:
                return
            now, wall = time.monotonic(), utc_now()
            self._active[fault] = (now, wall)
            self._changes.append(StatusChange(now, wall, fault, "start", detail))

    def end(self, fault: str, detail: str = "") -> None:
        from .events import utc_now

        with self._lock:
            began = self._active.pop(fault, None)
            if began is None:
                return
            now, wall = time.monotonic(), utc_now()
            self._changes.append(StatusChange(now, wall, fault, "end", detail, began[1],
                                              round(now - began[0], 3)))

    def end_all(self, detail: str) -> None:
        """End every fault still active (the run stops): each gets its end change."""
        for fault in list(self._active):
            self.end(fault, detail)

    def once(self, fault: str, detail: str = "") -> None:
        from .events import utc_now

        with self._lock:
            self._changes.append(StatusChange(time.monotonic(), utc_now(), fault, "once",
                                              detail))

    def poll(self) -> list[StatusChange]:
        if not self._changes:     # the common case, once per frame: no lock taken
            return []
        with self._lock:
            changes, self._changes = self._changes, []
        return changes
