"""Storage errors in the run's sinks: health, a bounded backlog, storage faults.

A full or failing disk (ENOSPC, EDQUOT, EIO, SQLITE_FULL...) must not stop a line-side run
from classifying, nor cut a line of the log. Each sink (event log, SQLite copy, snapshot
store) keeps a ``StorageHealth``: it is ``ok`` or failing with the error's text, and counts
failed attempts, retries and what it could not store. The event sinks keep an event they
could not write in a bounded in-memory backlog and write it, in order, once the disk has
room again (oldest dropped, and counted, when the backlog is full).

``StorageGuard`` is the one sink a run loop writes to: it hands each event to every sink
and, on ``poll()``, retries due backlogs and turns a sink that starts or stops failing into
one ``storage`` fault event (``state`` "start" / "end"). With ``on_error="stop"`` the first
failure sets the run's stop flag; the caller then ends with ``StorageError`` (exit 2).
"""

from __future__ import annotations

import errno as errno_names
import os
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import InputError

try:
    import fcntl
except ImportError:   # Windows: no flock
    fcntl = None

ON_STORAGE_ERROR = ("continue", "stop")


def error_text(exc: BaseException) -> str:
    """``ENOSPC No space left on device`` / ``SQLITE_FULL database or disk is full``."""
    if isinstance(exc, OSError) and exc.errno:
        name = errno_names.errorcode.get(exc.errno, f"errno {exc.errno}")
        return f"{name} {exc.strerror or exc}"
    name = getattr(exc, "sqlite_errorname", None)
    return f"{name} {exc}" if name else str(exc) or type(exc).__name__


def is_storage_error(exc: BaseException) -> bool:
    """An error of the disk or the database file, not of our code (those keep raising)."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.InterfaceError))


def disk_trouble(exc: BaseException) -> bool:
    """SQLITE_FULL or SQLITE_IOERR (any extended code): the disk, not the file, is at fault."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)


def lock_one_writer(path, what: str, option: str,
                    why: str = "it would rotate under the other") -> int | None:
    """An exclusive ``flock`` on ``<path>.lock`` for as long as the returned fd is open.

    A second process is refused (InputError naming the holder's pid): a sink that keeps
    its own size count, rotates or cuts back a failed write must be the file's only
    writer. The lock file stays (unlinking it would race); the kernel drops the lock
    when the process ends, however it ends. Raises OSError when it cannot be created.
    """
    if fcntl is None:
        return None
    lock_path = f"{os.path.realpath(path)}.lock"   # a link to the file shares its lock
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise InputError(
            f"{what} {path} is in use by another run"
            f"{f' (pid {holder})' if holder.isdigit() else ''}: one file takes one writer "
            f"({why}); give each run its own {option}") from None
    try:   # who holds it, for the message above (a full disk only loses the pid)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
    return fd


@dataclass
class StorageHealth:
    """One sink's state and counters (``to_dict`` for JSON)."""

    sink: str                      # log | sqlite | snapshots
    path: str
    ok: bool = True
    error: str | None = None       # text of the last error (kept after recovery)
    failures: int = 0              # failed attempts to store (first tries and retries)
    retries: int = 0               # retry rounds of the backlog
    stored: int = 0                # items stored (late ones included)
    late: int = 0                  # stored from the backlog after a failure
    unstored: int = 0              # lost for good: dropped from a full backlog, or pending
                                   # at close; snapshots: not saved
    pending: int = 0               # in the backlog now
    outages: int = 0               # times the sink went from ok to failing

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.error = error_text(exc)
        if self.ok:
            self.ok = False
            self.outages += 1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def describe(self) -> str:
        """One phrase for the run summary."""
        what = "not saved" if self.sink == "snapshots" else "events not stored"
        text = f"{self.sink}: {self.unstored} {what}"
        if self.late:
            text += f", {self.late} stored late"
        if self.retries:
            text += f" after {self.retries} retries"
        if self.error:
            text += f" (last error {self.error})"
        return text


# Retention limits: positive, finite and within what the clock and the disk can mean (a
# century, an exabyte); beyond that date arithmetic overflows when the run starts
RETENTION_MOST = {"days": 36_500.0, "MB": 1e12}


def check_retention(flag: str, value, unit: str) -> None:
    """Refuse a retention limit (``--sqlite-keep-days``, ``--snapshots-max-mb`` ...) that is
    not a positive finite number of ``unit`` ("days" or "MB") up to RETENTION_MOST."""
    if value is None:
        return
    most = RETENTION_MOST[unit]
    if not 0 < value <= most:     # NaN and inf fail too
        raise InputError(f"{flag} must be a positive number of {unit} up to {most:g}; "
                         f"found {value}")


@dataclass(frozen=True)
class StorageOptions:
    """What a run does about storage: errors, backlog, retention (CLI option names in
    ``from_options``)."""

    on_error: str = "continue"            # continue | stop
    backlog: int = 10_000                 # events kept in memory per sink while failing
    retry_s: float = 1.0                  # at most one retry round per sink per interval
    sqlite_keep_days: float | None = None
    snapshots_max_mb: float | None = None
    snapshots_keep_days: float | None = None

    KEYS = {"on_storage_error": "on_error", "storage_backlog": "backlog",
            "storage_retry_s": "retry_s", "sqlite_keep_days": "sqlite_keep_days",
            "snapshots_max_mb": "snapshots_max_mb",
            "snapshots_keep_days": "snapshots_keep_days"}

    def __post_init__(self) -> None:
        if self.on_error not in ON_STORAGE_ERROR:
            raise InputError(f"--on-storage-error must be stop or continue; found "
                             f"{self.on_error!r}")
        if self.backlog < 1 or not 0 <= self.retry_s < float("inf"):
            raise InputError(f"storage backlog must be >= 1 and retry interval a finite "
                             f"number >= 0; found {self.backlog} and {self.retry_s}")
        for name in ("sqlite_keep_days", "snapshots_max_mb", "snapshots_keep_days"):
            check_retention(f"--{name.replace('_', '-')}", getattr(self, name),
                            "MB" if name.endswith("_mb") else "days")

    @classmethod
    def from_options(cls, options: dict) -> "StorageOptions":
        """Pop the storage keys (``on_storage_error``, ``sqlite_keep_days``...) out of a
        run's keyword options; what is None keeps its default."""
        given = {cls.KEYS[k]: options.pop(k) for k in list(options) if k in cls.KEYS}
        return cls(**{k: v for k, v in given.items() if v is not None})

    def sink_args(self) -> dict[str, Any]:
        return {"backlog": self.backlog, "retry_s": self.retry_s}


class BufferedSink:
    """Base of the event sinks: ``push(item)`` stores now, or keeps the item in a bounded
    backlog after a storage error and stores it, in order, on a later ``poll``.

    Subclasses implement ``_store(items)``: store all of ``items`` or none (raise).
    """

    BATCH = 1   # items per _store call when the backlog is written

    def __init__(self, sink: str, path, backlog: int = 10_000, retry_s: float = 1.0):
        self.health = StorageHealth(sink, str(path))
        self._backlog: deque = deque()
        self._limit = max(1, int(backlog))
        self._retry_s = retry_s
        self._next_retry = 0.0

    def _store(self, items: list) -> None:
        raise NotImplementedError

    def push(self, item) -> None:
        if self._backlog:
            self._queue(item)
            self.poll()
            return
        try:
            self._store([item])
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            self._failed(exc)
            self._queue(item)
            return
        self.health.stored += 1
        if not self.health.ok:      # failed with nothing pending (it could not open)
            self._recovered()

    def _queue(self, item) -> None:
        if len(self._backlog) >= self._limit:
            self._backlog.popleft()
            self.health.unstored += 1
        self._backlog.append(item)
        self.health.pending = len(self._backlog)

    def _failed(self, exc: BaseException) -> None:
        self.health.failed(exc)
        self._next_retry = time.monotonic() + self._retry_s

    def _recovered(self) -> None:
        """Called when nothing is pending any more: a subclass may still be failing."""
        self.health.ok = True

    def poll(self, force: bool = False) -> None:
        """Write the backlog if a retry is due (``force``: now). Cheap when healthy."""
        if not self._backlog:
            return
        if not force and time.monotonic() < self._next_retry:
            return
        self.health.retries += 1
        while self._backlog:
            n = min(self.BATCH, len(self._backlog))
            items = [self._backlog[i] for i in range(n)]
            try:
                self._store(items)
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                self._failed(exc)
                return
            for _ in range(n):
                self._backlog.popleft()
            self.health.stored += n
            self.health.late += n
            self.health.pending = len(self._backlog)
        self._recovered()

    def _give_up(self) -> None:
        """At close: a last try, then what is still pending is lost (and counted)."""
        self.poll(force=True)
        self.health.unstored += len(self._backlog)
        self._backlog.clear()
        self.health.pending = 0


@dataclass
class StorageGuard:
    """The run's sinks behind one ``write``, with storage faults and the stop policy.

    sinks     -- event sinks (``write(event)``, ``poll()``, ``health``)
    watched   -- more things with ``health``/``poll`` (the snapshot store)
    on_fault  -- called with each storage fault event (the run's echo)
    """

    sinks: list
    watched: list = field(default_factory=list)
    on_error: str = "continue"
    stop: Any = None                      # a StopFlag (``set(reason)``)
    on_fault: Callable[[dict], None] | None = None
    failure: str | None = None            # set with on_error="stop": what failed first

    def __post_init__(self) -> None:
        self.sinks = list(self.sinks)
        self.watched = self.sinks + [w for w in self.watched if w is not None]
        self._ok = [True] * len(self.watched)
        self._context: dict[str, Any] = {}
        self.poll()     # a sink that could not even open (a full disk at start) says so now

    def watch(self, item) -> None:
        """Also report on ``item`` (a camera's snapshot store, opened after the guard)."""
        if item is not None and all(item is not seen for seen in self.watched):
            self.watched.append(item)   # a store shared by cameras: reported once
            self._ok.append(True)

    def write(self, event: dict) -> None:
        for key in ("source", "frame", "window", "model_sha256"):
            if key in event:
                self._context[key] = event[key]
        for sink in self.sinks:
            sink.write(event)
        self.poll()

    def poll(self) -> None:
        """Retry due backlogs; one fault event per sink that started or stopped failing."""
        for item in self.watched:
            item.poll()
        for i, item in enumerate(self.watched):
            health = item.health
            if health.ok == self._ok[i]:
                continue
            self._ok[i] = health.ok
            event = self._fault(health)
            for sink in self.sinks:
                sink.write(event)
            if self.on_fault is not None:
                self.on_fault(event)
            if not health.ok and self.on_error == "stop" and self.failure is None:
                self.failure = f"cannot store to {health.sink} {health.path}: {health.error}"
                if self.stop is not None:
                    self.stop.set("storage error")

    def _fault(self, health: StorageHealth) -> dict:
        from .events import utc_now
        from .loop import event_id

        state = "end" if health.ok else "start"
        message = (f"{health.sink} {health.path}: {health.error}" if state == "start" else
                   f"{health.sink} {health.path} stores again ({health.late} stored late, "
                   f"{health.unstored} not stored so far)")
        event = {"id": event_id(), "time": utc_now(), "type": "fault", **self._context,
                 "fault": "storage",
                 "state": state, "sink": health.sink, "path": health.path,
                 "error": health.error, "message": message}
        return event

    def close(self) -> None:
        """A last retry of every backlog (end events included if it works)."""
        for item in self.watched:
            item.poll(force=True)
        self.poll()

    def healths(self) -> list[StorageHealth]:
        return [item.health for item in self.watched]

    @property
    def unstored(self) -> int:
        """Events the log and SQLite copy could not store (snapshots apart)."""
        return sum(h.unstored + h.pending for h in self.healths() if h.sink != "snapshots")

    def report(self) -> dict[str, Any]:
        """``storage`` (one line) and counts for the run summary's ``extra``."""
        healths = self.healths()
        if not healths:
            return {}
        troubled = [h for h in healths if h.failures or h.unstored or not h.ok]
        out: dict[str, Any] = {
            "storage": "; ".join(h.describe() for h in troubled) if troubled else "ok",
            "unstored": self.unstored}
        snapshots = [h for h in healths if h.sink == "snapshots"]
        if snapshots:
            out["snapshots_not_saved"] = snapshots[0].unstored
        return out

