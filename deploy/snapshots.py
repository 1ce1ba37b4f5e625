"""Event snapshots: one JPEG per event frame, within a size and age limit.

A snapshot is encoded in memory and written to a hidden ``.part`` file that is renamed
into place, so a full disk or a kill never leaves a cut or 0-byte ``.jpg``. Retention
(``max_mb``, ``keep_days``) deletes the oldest snapshots first; the folder is walked once
when the store opens and then tracked with a running total, so a save costs no directory
listing. Only files named like our snapshots are ever counted or deleted.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import weakref
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .events import utc_now
from .storage import StorageHealth, check_retention

# <UTC time>_[<source>_]f<frame>_<class>.jpg (files of earlier versions have no source)
SNAPSHOT_NAME = re.compile(r"^\d{8}T\d{6}(\.\d+)?Z_([A-Za-z0-9_-]+_)?f\d+_[A-Za-z0-9_-]*\.jpg$")
_SHARED: "weakref.WeakValueDictionary[str, SnapshotStore]" = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


SAFE_PART = 48   # characters of a source or class in a name (a 256-character label and a
                 # long URL made names past the file system's 255 bytes: nothing was saved)


def _safe(text: str) -> str:
    """``text`` as a part of a snapshot name: ASCII letters, digits, - and _ (what
    SNAPSHOT_NAME finds again after a restart, for retention: a ``défaut`` snapshot was
    never deleted), at most SAFE_PART characters; one that had to change ends in a short
    hash of the whole, so two such names still tell apart."""
    text = str(text)
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in text)
    if len(safe) <= SAFE_PART and safe == text:
        return safe
    # changed or cut: the hash keeps two names apart that differ only there (左.avi and
    # 右.avi saving at the same frame and millisecond would share a file)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe[:SAFE_PART - 9]}-{digest}"


def shared_store(directory, max_mb: float | None = None,
                 keep_days: float | None = None) -> "SnapshotStore":
    """The one store of ``directory`` in this process: cameras of a run that share a
    snapshot folder share its limits (one running total), instead of each keeping the
    folder to the limit on its own. The same folder with other limits is refused."""
    key = os.path.realpath(directory)
    with _SHARED_LOCK:
        store = _SHARED.get(key)
        if store is None:
            store = _SHARED[key] = SnapshotStore(directory, max_mb, keep_days)
        elif (store.max_mb, store.keep_days) != (max_mb, keep_days):
            raise InputError(f"snapshot folder {directory} is shared by cameras with other "
                             f"limits ({store.max_mb} MB / {store.keep_days} days against "
                             f"{max_mb} MB / {keep_days} days): give them one set of "
                             "limits, or each camera its own folder")
        return store
JPEG_QUALITY = 90


class SnapshotStore:
    """``save(image, frame, label)`` -> the snapshot's path, or None when it could not be
    written (counted in ``health``; the event is logged without a snapshot)."""

    def __init__(self, directory, max_mb: float | None = None,
                 keep_days: float | None = None):
        check_retention("--snapshots-max-mb", max_mb, "MB")
        check_retention("--snapshots-keep-days", keep_days, "days")
        self.directory = Path(directory)
        self.max_mb, self.keep_days = max_mb, keep_days
        self._save_lock = threading.Lock()
        self.max_bytes = int(max_mb * 1024 * 1024) if max_mb is not None else None
        self.keep_s = keep_days * 86400.0 if keep_days is not None else None
        self.health = StorageHealth("snapshots", str(self.directory))
        self.saved = 0
        self.deleted = 0
        self.delete_failures = 0
        self.total_bytes = 0
        self._files: deque[tuple[float, int, str]] = deque()   # (mtime, size, name), oldest first
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._probe()
            self._scan()
        except OSError as exc:
            raise InputError(f"cannot use snapshot folder {self.directory}: "
                             f"{exc.strerror}") from None
        self._expire(time.time())
        self._make_room(0)

    def _probe(self) -> None:
        """An existing folder this run may not write into (read-only, another user's)
        fails at the start, as a new one it cannot make does; a full disk is a storage
        fault of the run instead (it may clear)."""
        import errno
        import tempfile

        try:
            fd, name = tempfile.mkstemp(prefix=".probe-", suffix=".jpg.part",
                                        dir=self.directory)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            return
        os.close(fd)
        os.unlink(name)

    def _scan(self) -> None:
        """The one directory walk: our snapshots by age; stale ``.part`` files removed."""
        found = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") and name.endswith(".jpg.part") and \
                        SNAPSHOT_NAME.match(name[1:-5]):
                    self._unlink(name)
                elif SNAPSHOT_NAME.match(name) and entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    found.append((info.st_mtime, info.st_size, name))
        found.sort()
        self._files.extend(found)
        self.total_bytes = sum(size for _, size, _ in found)

    def save(self, image: np.ndarray, frame: int, label: str,
             source: str | None = None) -> Path | None:
        stamp = utc_now().replace(":", "").replace("-", "")
        who = f"{_safe(source)}_" if source else ""
        name = f"{stamp}_{who}f{frame:08d}_{_safe(label)}.jpg"
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return self._failed(OSError(f"cannot encode frame {frame} as JPEG"))
        with self._save_lock:
            return self._store(name, data, len(data))

    def _store(self, name: str, data, size: int) -> Path | None:
        if self.max_bytes is not None and size > self.max_bytes:
            return self._failed(OSError(f"a {size}-byte snapshot is larger than "
                                        f"--snapshots-max-mb ({self.max_bytes} bytes)"))
        now = time.time()
        self._expire(now)
        self._make_room(size)
        try:
            self._write(name, data.tobytes())
        except OSError as exc:
            return self._failed(exc)
        self._files.append((now, size, name))
        self.total_bytes += size
        self.saved += 1
        self.health.stored += 1
        self.health.ok = True
        return self.directory / name

    def _write(self, name: str, data: bytes) -> None:
        part = self.directory / f".{name}.part"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            os.close(fd)
            self._unlink(part.name)
            raise
        os.close(fd)
        try:
            os.replace(part, self.directory / name)
        except OSError:
            self._unlink(part.name)
            raise

    def _failed(self, exc: OSError) -> None:
        self.health.failed(exc)
        self.health.unstored += 1
        return None

    def poll(self, force: bool = False) -> None:
        """Age-based deletion between saves (one comparison when nothing is due)."""
        if self.keep_s is not None:
            with self._save_lock:
                self._expire(time.time())

    def _expire(self, now: float) -> None:
        if self.keep_s is None:
            return
        cutoff = now - self.keep_s
        while self._files and self._files[0][0] < cutoff:
            self._drop_oldest()

    def _make_room(self, size: int) -> None:
        if self.max_bytes is None:
            return
        while self._files and self.total_bytes + size > self.max_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, size, name = self._files.popleft()
        self.total_bytes -= size
        if self._unlink(name):
            self.deleted += 1

    def _unlink(self, name: str) -> bool:
        try:
            os.unlink(self.directory / name)
        except FileNotFoundError:
            return False                 # somebody else removed it: nothing to count
        except OSError:
            self.delete_failures += 1    # kept on disk, no longer counted: rare (EACCES)
            return False
        return True
