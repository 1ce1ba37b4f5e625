"""Store-and-forward: messages the broker has not acknowledged yet, on disk, in order.

A line PC loses its network now and then; events made meanwhile must reach the plant
later, also across a restart of the service. Each message is one row of an SQLite table
(WAL journal) until the broker acknowledges it. The spool is bounded: past ``max_rows``
the oldest rows not yet handed to the client are dropped and counted.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from .errors import InputError
from .storage import lock_one_writer


class Spool:
    """One run's spool: a second run on the same file is refused (``storage.lock_one_writer``),
    since two clients of one MQTT session take it from each other at every reconnect."""

    def __init__(self, path, max_rows: int = 100_000):
        if max_rows < 1:
            raise InputError(f"the MQTT spool must hold at least 1 event; found {max_rows}")
        self.path = Path(path)
        self.max_rows = max_rows
        self.dropped = 0
        self._lock = threading.Lock()
        self._lock_fd = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = lock_one_writer(
                self.path, "MQTT spool", "source name or --mqtt topic prefix",
                why="two runs publishing one source under one prefix are one MQTT client "
                    "to the broker, which drops each for the other")
            self.db = sqlite3.connect(str(self.path), check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY "
                            "AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL)")
            self.db.commit()
            self._rows = self.db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"cannot use {self.path} as an MQTT spool: {exc}") from None

    def append(self, topic: str, payload: bytes, keep_after: int = 0) -> int:
        """Store one message; its sequence number. Rows up to ``keep_after`` are with the
        client already and are not dropped."""
        with self._lock, self.db:
            seq = self.db.execute("INSERT INTO spool (topic, payload) VALUES (?, ?)",
                                  (topic, payload)).lastrowid
            self._rows += 1
            excess = self._rows - self.max_rows
            if excess > 0:
                gone = self.db.execute(
                    "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool WHERE seq > ? "
                    "AND seq < ? ORDER BY seq LIMIT ?)", (keep_after, seq, excess)).rowcount
                self._rows -= gone
                self.dropped += gone
        return seq

    def after(self, seq: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` messages after ``seq``, oldest first."""
        with self._lock:
            return self.db.execute("SELECT seq, topic, payload FROM spool WHERE seq > ? "
                                   "ORDER BY seq LIMIT ?", (seq, limit)).fetchall()

    def remove(self, seqs) -> None:
        seqs = list(seqs)
        if not seqs:
            return
        with self._lock, self.db:
            gone = self.db.executemany("DELETE FROM spool WHERE seq = ?",
                                       [(s,) for s in seqs]).rowcount
            self._rows -= gone

    @property
    def pending(self) -> int:
        return self._rows

    def close(self) -> None:
        with self._lock:
            self.db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
