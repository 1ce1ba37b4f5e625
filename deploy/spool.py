"""Store-and-forward: messages the broker has not acknowledged yet, on disk, in order.

A line PC loses its network now and then; events made meanwhile must reach the plant
later, also across a restart of the service. Each message is one row of an SQLite table
(WAL journal) until the broker acknowledges it. The spool is bounded: past ``max_rows``
the oldest rows not yet handed to the client are dropped and counted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import deque
from itertools import islice
from pathlib import Path

from .errors import InputError
from .storage import disk_trouble, lock_one_writer

log = logging.getLogger("edgecnn.deploy")


# While the disk refuses the spool (full, I/O error), messages wait in memory, this many at
# most (the oldest then dropped and counted), and the disk is tried again this often
BACKLOG = 10_000
RETRY_S = 1.0


class Spool:
    """One run's spool: a second run on the same file is refused (``storage.lock_one_writer``),
    since two clients of one MQTT session take it from each other at every reconnect.

    A disk that refuses it (full, I/O error; also at the start) never ends the run: new
    messages wait in a bounded memory backlog, in order after the stored ones, and go to
    the file once it takes them again (``failing`` says why meanwhile)."""

    def __init__(self, path, max_rows: int = 100_000):
        if max_rows < 1:
            raise InputError(f"the MQTT spool must hold at least 1 event; found {max_rows}")
        self.path = Path(path)
        self.max_rows = max_rows
        self.dropped = 0
        self.failing: str | None = None
        self._lock = threading.Lock()
        self._lock_fd = None
        self._waiting: deque[tuple[str, bytes]] = deque()
        self._next_try = 0.0
        self._keep_after = 0        # the last row handed to the client (``after``)
        self._rows = 0
        self.db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = lock_one_writer(
                self.path, "MQTT spool", "source name or --mqtt topic prefix",
                why="two runs publishing one source under one prefix are one MQTT client "
                    "to the broker, which drops each for the other")
            self._connect()
        except (OSError, sqlite3.Error) as exc:
            if not (isinstance(exc, sqlite3.Error) and disk_trouble(exc)):
                self._close_db()
                raise InputError(f"cannot use {self.path} as an MQTT spool: {exc}") from None
            self._failed(exc)     # a full disk at the start: messages wait in memory

    def _connect(self) -> None:
        db = sqlite3.connect(str(self.path), check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY "
                       "AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL)")
            db.commit()
            self._rows = db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
        except BaseException:
            db.close()
            raise
        self.db = db

    def _failed(self, exc: BaseException) -> None:
        if self.failing is None:
            log.warning("MQTT spool %s: the disk refuses it (%s); events wait in memory (up "
                        "to %d) until it takes them again", self.path, exc, BACKLOG)
        self.failing = str(exc)
        self._next_try = time.monotonic() + RETRY_S

    def _retry(self) -> None:
        """Put the waiting messages into the file, at most once per RETRY_S (lock held)."""
        if self.failing is None and not self._waiting or time.monotonic() < self._next_try:
            return
        try:
            if self.failing is not None:
                self._close_db()   # a fresh connection: a refused commit can stick to one
            if self.db is None:
                self._connect()
            while self._waiting:      # in transactions of up to 500: one commit each,
                chunk = list(islice(self._waiting, 500))   # not a WAL frame set per row
                self._insert_many(chunk)
                for _ in chunk:
                    self._waiting.popleft()
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")   # give the disk back
        except (OSError, sqlite3.Error) as exc:
            self._failed(exc)
            return
        if self.failing is not None:
            log.warning("MQTT spool %s: the disk takes it again", self.path)
        self.failing = None

    def _insert_many(self, rows: list[tuple[str, bytes]]) -> None:
        """Messages in one transaction; over ``max_rows``, the oldest stored ones the
        client does not have yet make room."""
        with self.db:
            self.db.executemany("INSERT INTO spool (topic, payload) VALUES (?, ?)", rows)
            excess = self._rows + len(rows) - self.max_rows
            gone = 0
            if excess > 0:
                gone = self.db.execute(
                    "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool WHERE seq > ? "
                    "ORDER BY seq LIMIT ?)", (self._keep_after, excess)).rowcount
        self._rows += len(rows) - gone
        self.dropped += gone

    def append(self, topic: str, payload: bytes) -> None:
        """Store one message. Rows already handed to the client (up to the last ``after``
        gave) are not dropped to make room."""
        with self._lock:
            self._retry()
            if self.failing is None and not self._waiting:
                try:
                    self._insert_many([(topic, payload)])
                    return
                except (OSError, sqlite3.Error) as exc:
                    self._failed(exc)
            if len(self._waiting) >= BACKLOG:
                self._waiting.popleft()
                self.dropped += 1
            self._waiting.append((topic, payload))

    def after(self, seq: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` stored messages after ``seq``, oldest first, for the client to
        send: they and everything before them are its own from now on (never dropped to
        make room; learned here, under the lock, so a message stored meanwhile does not
        see an older cursor and drop one in flight, counted dropped and published). The
        sending thread asks often: waiting ones are stored meanwhile, when the disk lets
        them."""
        with self._lock:
            self._retry()
            self._keep_after = seq
            if self.db is None:
                return []
            try:
                rows = self.db.execute("SELECT seq, topic, payload FROM spool WHERE seq > ? "
                                       "ORDER BY seq LIMIT ?", (seq, limit)).fetchall()
            except sqlite3.Error as exc:
                self._failed(exc)
                return []
            if rows:
                self._keep_after = rows[-1][0]
            return rows

    def remove(self, seqs) -> None:
        """Acknowledged messages out of the file; where the disk refuses even that they
        stay and go again later (delivery is at least once)."""
        seqs = list(seqs)
        if not seqs:
            return
        with self._lock:
            if self.db is None:
                return
            try:
                with self.db:
                    gone = self.db.executemany("DELETE FROM spool WHERE seq = ?",
                                               [(s,) for s in seqs]).rowcount
            except sqlite3.Error as exc:
                self._failed(exc)
                return
            self._rows -= gone

    @property
    def pending(self) -> int:
        return self._rows + len(self._waiting)

    def _close_db(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def close(self) -> None:
        with self._lock:
            if self._waiting:
                self._next_try = 0.0
                self._retry()        # a last try; what still waits is lost with the run
                if self._waiting:
                    log.warning("MQTT spool %s: %d event(s) never reached the disk or the "
                                "broker", self.path, len(self._waiting))
            self._close_db()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
