"""The defect log: JSON Lines that no crash can corrupt, an optional SQLite copy, summaries.

Each event is encoded to one complete line first and handed to the kernel in a single
``write`` on a file opened with O_APPEND, so a process killed at any moment (even with
SIGKILL) leaves only whole lines. ``fsync`` decides when the lines also reach the disk
(``every`` event, at most once per ``interval``, or ``never``: the OS decides); a line cut
by a power loss is trimmed the next time the log is opened. Logs rotate by size
(``events.jsonl`` -> ``events.jsonl.1`` ...); one process writes a log (a ``flock``).

A disk that refuses a write (full, quota, I/O error) never raises out of ``write`` and
never leaves a cut line: the line is taken back and kept in a bounded backlog that is
written, in order, when the disk has room again (``storage.BufferedSink``; the SQLite sink
does the same with rolled-back inserts). Each sink's ``health`` says what it could not store.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sqlite3
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .storage import (
    BufferedSink,
    check_retention,
    disk_trouble,
    is_storage_error,
    lock_one_writer,
)

FSYNC_POLICIES = ("every", "interval", "never")
SQLITE_MAGIC = b"SQLite format 3\x00"


def utc_now(timespec: str = "milliseconds") -> str:
    """UTC ISO-8601 with a Z, e.g. 2025-03-01T12:00:00.123Z (``timespec`` as isoformat)."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


_AS_IS = (str, int, bool, type(None))   # exactly these types: most fields of an event


def _plain(value: Any) -> Any:
    kind = type(value)
    if kind in _AS_IS:                     # fast path (a tiled frame logs many events)
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def encode_event(event: dict[str, Any]) -> bytes:
    """One event -> one UTF-8 JSON line (NaN/Inf become null: the line stays valid JSON)."""
    return (json.dumps(_plain(event), ensure_ascii=False, separators=(",", ":"),
                       allow_nan=False) + "\n").encode("utf-8")


class EventLog(BufferedSink):
    """Append-only JSON Lines file with whole-line writes, fsync policy and rotation.

    One writer per log: an exclusive ``flock`` on ``<log>.lock`` (held for the life of the
    log) refuses a second process, whose own size count would rotate the file under the
    first. A write the disk refuses (ENOSPC, EIO...) is cut back to the last whole line
    and the line waits in the backlog (``storage.BufferedSink``); ``write`` never raises
    for a storage error, ``health`` says what happened.
    """

    def __init__(self, path, fsync: str = "interval", fsync_interval: float = 1.0,
                 rotate_bytes: int | None = None, backups: int = 5, *,
                 backlog: int = 10_000, retry_s: float = 1.0):
        if fsync not in FSYNC_POLICIES:
            raise InputError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}; found {fsync!r}")
        if rotate_bytes is not None and rotate_bytes <= 0:
            raise InputError(f"rotation size must be positive; found {rotate_bytes}")
        self.path = Path(path)
        super().__init__("log", self.path, backlog, retry_s)
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.rotate_bytes = rotate_bytes
        self.backups = max(1, backups)
        self.written = 0
        self.rotations = 0
        self.trimmed_bytes = 0
        self._last_sync = time.monotonic()
        self._dirty = False
        self._sync_failed = False
        self._torn: int | None = None     # a cut line starts here: truncate before writing
        self._fd: int | None = None
        self._lock_fd: int | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = lock_one_writer(self.path, "event log", "--log")
            why = _not_a_log(self.path)
            if why is not None:
                self.close()
                raise InputError(_foreign_log(self.path, why))
            self._fd = self._open()
        except OSError as exc:
            self.close()
            raise InputError(f"cannot open event log {self.path}: {exc.strerror}") from None

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = self._repair(fd)
        return fd

    def _repair(self, fd: int) -> int:
        """Cut a trailing partial line (left by a power loss) so the log stays line-clean;
        a whole event that only lacks its newline (a file edited by hand) gets one."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return size
        keep = size
        block = 1 << 16
        while keep > 0:
            start = max(0, keep - block)
            chunk = os.pread(fd, keep - start, start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            keep = start
        if size - keep <= 1 << 20 and parse_event_line(os.pread(fd, size - keep, keep)) is not None:
            os.write(fd, b"\n")                 # O_APPEND: after the whole event
            return size + 1
        kept = self._keep_tail(fd, keep, size)
        note = logging.getLogger("edgecnn.deploy").warning
        if kept is None and keep > 0:   # (a log of one cut line kept would not be a log)
            # nowhere to move it (a full disk): it stays, closed by a newline, one bad line
            # that readers skip and count, rather than bytes of the user's file lost
            try:
                os.write(fd, b"\n")
            except OSError:     # not even one byte: the cut line goes, or nothing starts
                pass
            else:
                note("note: %s ended in a cut line (%d bytes, a power loss?); %s.torn could "
                     "not be written, so it stays in the log as one unreadable line",
                     self.path, size - keep, self.path)
                return size + 1
        os.ftruncate(fd, keep)
        self.trimmed_bytes = size - keep
        note("note: %s ended in a cut line (%d bytes, a power loss?): moved to %s before "
             "appending", self.path, self.trimmed_bytes, kept or "nowhere (the disk is full)")
        return keep

    def _keep_tail(self, fd: int, keep: int, size: int) -> str | None:
        """The bytes a repair cuts off, appended to ``<log>.torn`` (whatever they are, they
        were in the user's file); None when that file cannot be written (a full disk: what
        this attempt appended is taken back)."""
        torn = f"{self.path}.torn"
        try:
            out = os.open(torn, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:
            return None
        start = os.fstat(out).st_size
        try:
            try:
                position = keep
                while position < size:
                    chunk = os.pread(fd, min(1 << 20, size - position), position)
                    if not chunk:
                        break
                    os.write(out, chunk)
                    position += len(chunk)
                os.write(out, b"\n")
                os.fsync(out)
            except OSError:
                try:
                    os.ftruncate(out, start)
                except OSError:
                    pass
                return None
        finally:
            os.close(out)
        return torn

    def write(self, event: dict[str, Any]) -> None:
        self.push(encode_event(event))

    def _store(self, lines: list) -> None:
        for line in lines:
            self._write_line(line)

    def _write_line(self, line: bytes) -> None:
        if self._fd is None:                # a rotation could not open the new file
            self._fd = self._open()
        if self._torn is not None:          # a cut line is still there: remove it first
            os.ftruncate(self._fd, self._torn)
            self._size, self._torn = self._torn, None
        if self.rotate_bytes and self._size and self._size + len(line) > self.rotate_bytes:
            self._rotate()
        start = self._size
        view = memoryview(line)
        try:
            while view:
                done = os.write(self._fd, view)
                view = view[done:]
        except OSError:
            if len(view) < len(line):       # part of the line is in: cut it back
                self._torn = start
                try:
                    os.ftruncate(self._fd, start)
                    self._torn = None
                except OSError:
                    pass
            raise
        self._size += len(line)
        self.written += 1
        self._dirty = True
        if self.fsync == "every" or (self.fsync == "interval" and
                                     time.monotonic() - self._last_sync >= self.fsync_interval):
            self.sync()

    def sync(self) -> None:
        """fsync; a failure marks the log failing (the lines stay written) until one works."""
        if self._dirty and self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._sync_failed = True
                self._failed(exc)
                return
            self._dirty = False
            self._last_sync = time.monotonic()
            if self._sync_failed:
                self._sync_failed = False
                if not self._backlog:
                    self._recovered()

    def _recovered(self) -> None:
        if not self._sync_failed:
            super()._recovered()

    def _rotate(self) -> None:
        if self.fsync != "never":
            self.sync()
        os.close(self._fd)
        self._fd = None
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self.rotations += 1
        self._fd = self._open()

    def close(self) -> None:
        if self._fd is not None:
            self._give_up()
            if self._torn is not None:
                try:
                    os.ftruncate(self._fd, self._torn)
                except OSError:
                    pass                    # the next open trims it
            if self.fsync != "never":
                self.sync()
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)         # releases the flock
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SqliteSink(BufferedSink):
    """The same events in an SQLite table (WAL journal: readers never block the writer).

    A full disk or I/O error rolls the insert back and keeps the row in the backlog (the
    backlog is written in transactions of ``BATCH`` rows). ``keep_days`` deletes rows
    older than that at open and then every ``prune_every_s`` (not per event).
    """

    COLUMNS = ("time", "type", "source", "idx", "class", "confidence", "region",
               "latency_ms", "model_sha256", "data")
    BATCH = 500

    def __init__(self, path, *, keep_days: float | None = None,
                 prune_every_s: float = 3600.0, backlog: int = 10_000, retry_s: float = 1.0):
        self.path = Path(path)
        super().__init__("sqlite", self.path, backlog, retry_s)
        check_retention("--sqlite-keep-days", keep_days, "days")
        self.keep_days = keep_days
        self.prune_every_s = prune_every_s
        self.pruned = 0
        self.prune_failures = 0
        self._insert = (f"INSERT INTO events ({', '.join(self.COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(self.COLUMNS))})")
        self.db = None
        self._closed = False
        self._next_prune = 0.0
        self._opened = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connect()
        except InputError:
            self.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            if not disk_trouble(exc):
                raise InputError(f"cannot use {self.path} as an SQLite event store: "
                                 f"{exc}") from None
            self._failed(exc)       # a full disk at start: rows wait, connect is retried
        if keep_days is not None and self.db is not None:
            self.prune()

    def _connect(self) -> None:
        db = sqlite3.connect(str(self.path))
        try:
            if not self._opened:              # the first open only, not a reconnect
                check_event_store(db, self.path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, time TEXT, "
                "type TEXT, source TEXT, idx INTEGER, class TEXT, confidence REAL, "
                "region TEXT, latency_ms REAL, model_sha256 TEXT, data TEXT)")
            if self.keep_days is not None:
                db.execute("CREATE INDEX IF NOT EXISTS events_time ON events (time)")
            db.commit()
        except BaseException:
            db.close()
            raise
        self.db = db
        self._opened = True

    def write(self, event: dict[str, Any]) -> None:
        plain = _plain(event)
        index = plain.get("frame", plain.get("window"))
        region = plain.get("region")
        self.push((plain.get("time"), plain.get("type"), plain.get("source"), index,
                   plain.get("class", plain.get("fault")), plain.get("confidence"),
                   json.dumps(region) if region is not None else None,
                   plain.get("latency_ms"), plain.get("model_sha256"),
                   json.dumps(plain, ensure_ascii=False)))
        if self.keep_days is not None and self.db is not None and \
                time.monotonic() >= self._next_prune:
            self.prune()

    def _store(self, rows: list) -> None:
        if self.db is None:
            self._connect()
        elif not self.health.ok:
            self._checkpoint()
        with self.db:       # one transaction: all rows or (rolled back) none
            self.db.executemany(self._insert, rows)

    def _checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it: on a full disk the WAL (up to
        ~4 MB before SQLite's own checkpoint) is often the space that is missing."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            if not is_storage_error(exc):
                raise

    def prune(self) -> int:
        """Delete rows older than ``keep_days`` (by their UTC ``time``); a failure (a full
        disk: deleting needs journal space) is counted and tried again next period."""
        self._next_prune = time.monotonic() + self.prune_every_s
        cutoff = datetime.now(timezone.utc) - timedelta(days=self.keep_days)
        stamp = cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        try:
            with self.db:
                deleted = self.db.execute("DELETE FROM events WHERE time < ?",
                                          (stamp,)).rowcount
        except sqlite3.Error as exc:
            if not is_storage_error(exc):
                raise
            self.prune_failures += 1
            return 0
        self.pruned += deleted
        return deleted

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._give_up()
        if self.db is not None:
            self.db.close()
            self.db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------- summaries

def log_files(path) -> list[Path]:
    """The log and its rotated predecessors, oldest first."""
    path = Path(path)
    rotated = []
    for sibling in path.parent.glob(path.name + ".*"):
        suffix = sibling.name[len(path.name) + 1:]
        if suffix.isdigit() and sibling.is_file():   # a folder of that name is not a log
            rotated.append((int(suffix), sibling))
    files = [p for _, p in sorted(rotated, reverse=True)]
    return files + ([path] if path.is_file() else [])


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == SQLITE_MAGIC


def _read_events(path: Path):
    """Yield event dicts, or None for a line that is not a JSON object."""
    if _is_sqlite(path):
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            rows = db.execute("SELECT data FROM events ORDER BY id").fetchall()
            db.close()
        except sqlite3.Error as exc:
            raise InputError(f"{path} is an SQLite file without a readable events table: "
                             f"{exc}") from None
        for (data,) in rows:
            yield parse_event_line(data)
        return
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.strip():
                yield parse_event_line(raw)


_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def _real_time(stamp: str) -> bool:
    """A date and time that exist (no month 13, no 99:99): its first 16 characters."""
    try:
        datetime.strptime(stamp[:16], "%Y-%m-%dT%H:%M")
    except ValueError:
        return False
    return True


MAX_LINE = 1 << 20      # an event line is far shorter: a longer first line is not a log



def _foreign_log(path: Path, why: str) -> str:
    return (f"--log {path} exists and is not an edgecnn event log ({why}); appending would "
            f"damage it: give a new file name, or the log of an earlier run")


def check_event_store(db, path) -> None:
    """At the first open: a damaged database, another program's database or an ``events``
    table of another layout is refused, not written into."""
    problem = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    if problem != "ok":
        problem = " ".join(line for line in str(problem).splitlines()
                           if not line.startswith("***"))
        raise InputError(f"--sqlite {path} is a damaged SQLite database ({problem}); "
                         "give a new file, or repair it (sqlite3 .recover)")
    tables = {row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and "events" not in tables:
        raise InputError(f"--sqlite {path} is another program's database (tables: "
                         f"{', '.join(sorted(tables)[:5])}); give a new file")
    if "events" in tables:
        have = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        missing = [c for c in SqliteSink.COLUMNS if c not in have]
        if missing:
            raise InputError(f"--sqlite {path} has an events table without the "
                             f"columns {', '.join(missing)}: not an edgecnn event store")


# -- probes: what opening a sink would refuse, found without writing (``serve --check``
# beside a running service: no lock taken, no cut line repaired, nothing created)

def probe_log(path) -> None:
    path = Path(path)
    why = _not_a_log(path)
    if why is not None:
        raise InputError(_foreign_log(path, why))
    probe_writable(path, "event log")


def probe_sqlite(path) -> None:
    path = Path(path)
    probe_writable(path, "SQLite event store")
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputError(f"cannot use {path} as an SQLite event store: {exc}") from None
    try:
        check_event_store(db, path)
    except sqlite3.Error as exc:
        raise InputError(f"cannot use {path} as an SQLite event store: {exc}") from None
    finally:
        db.close()


def probe_writable(path: Path, what: str) -> None:
    """An existing file opened for appending (nothing written); for a new one, a file of
    this process's own made and removed in the nearest folder that exists."""
    import tempfile

    try:
        if path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
            return
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".edgecnn-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot open {what} {path}: {exc.strerror or exc}") from None


def _not_a_log(path: Path) -> str | None:
    """Why an existing file is not an event log this runtime wrote (None when it is, or
    is empty or missing): its first line must be an event. A log cut in its very first
    line (a power loss at the first write) still starts like one."""
    if not path.is_file():               # missing, or a device such as /dev/null
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(MAX_LINE)
    except OSError:                      # opening it for appending says why
        return None
    if not head:
        return None
    if head.startswith(b"SQLite format 3\0"):
        return "it is an SQLite database: give it to --sqlite"
    first, newline, _ = head.partition(b"\n")
    if parse_event_line(first) is not None:        # (a whole event without its newline too)
        return None
    if not newline and len(head) < MAX_LINE and head.startswith((b'{"id":"', b'{"time":"')):
        return None                      # one cut line: _repair removes it
    return "its first line is not an event"


def parse_event_line(raw) -> dict | None:
    """An event as the runtime writes it, else None: not JSON (or nested past the parser's
    depth, or an SQLite NULL), not an object, no ISO time, a class that is not text."""
    if raw is None:
        return None
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, TypeError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("time"), str) or \
            not _STAMP.match(event["time"]) or not _real_time(event["time"]):
        return None
    if event.get("type") != "fault" and not isinstance(event.get("class"), str):
        return None
    return event


def summarize_events(path) -> dict[str, Any]:
    """Counts per class and per UTC hour for a JSONL log (with its rotations) or SQLite file."""
    path = Path(path)
    if not path.is_file():
        from .bundle import not_a_file

        why = "does not exist" if not path.exists() else not_a_file(path)
        raise InputError(f"event log {path} {why}")
    files = [path] if _is_sqlite(path) else log_files(path)
    by_class: Counter = Counter()
    faults: Counter = Counter()
    by_hour: dict[str, Counter] = defaultdict(Counter)
    bad = 0
    first = last = None
    for file in files:
        for event in _read_events(file):
            if event is None:
                bad += 1
                continue
            stamp = str(event["time"])
            first = stamp if first is None or stamp < first else first
            last = stamp if last is None or stamp > last else last
            if event.get("type") == "fault":
                if event.get("state") != "end":   # a fault that ends was counted at start
                    faults[str(event.get("fault"))] += 1
                continue
            label = str(event.get("class"))
            by_class[label] += 1
            by_hour[stamp[:13]][label] += 1
    if bad and first is None and not _is_sqlite(path):
        raise InputError(f"{path} is not an edgecnn event log: none of its {bad} line(s) is "
                         "an event (expected JSON Lines from --log, or an SQLite --sqlite file)")
    return {"files": [str(f) for f in files], "events": sum(by_class.values()),
            "by_class": dict(sorted(by_class.items())),
            "by_hour": {h: dict(sorted(c.items())) for h, c in sorted(by_hour.items())},
            "faults": dict(sorted(faults.items())), "bad_lines": bad,
            "first": first, "last": last}


def format_event_summary(summary: dict[str, Any]) -> str:
    lines = [f"{summary['events']} events from {summary['first'] or '-'} "
             f"to {summary['last'] or '-'} ({len(summary['files'])} file(s))"]
    if summary["by_class"]:
        width = max(len(c) for c in summary["by_class"])
        lines.append("per class:")
        lines += [f"  {c:<{width}}  {n}" for c, n in summary["by_class"].items()]
        lines.append("per hour (UTC):")
        for hour, counts in summary["by_hour"].items():
            detail = ", ".join(f"{c} {n}" for c, n in counts.items())
            lines.append(f"  {hour.replace('T', ' ')}:00  {sum(counts.values()):>5}  {detail}")
    if summary["faults"]:
        lines.append("faults: " + ", ".join(f"{k} {v}" for k, v in
                                                   summary["faults"].items()))
    if summary["bad_lines"]:
        lines.append(f"skipped {summary['bad_lines']} unreadable line(s)")
    return "\n".join(lines)
