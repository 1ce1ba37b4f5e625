"""Full disks and retention: the JSONL log, SQLite and snapshots on a real small tmpfs.

Every case mounts its own tmpfs (``mount -t tmpfs -o size=...``: needs root, as in CI) and
fills it with a filler file, so the kernel's own ENOSPC is what the sinks meet.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.deploy.errors import InputError
from edgecnn.deploy.events import EventLog, SqliteSink, log_files, summarize_events
from edgecnn.deploy.options import Logging, plan_from_keywords
from edgecnn.deploy.run import run_logged
from edgecnn.deploy.snapshots import SnapshotStore
from edgecnn.deploy.storage import StorageGuard, StorageOptions
from runtime_helpers import (
    CALIBRATION,
    gray_frame,
    level_for_class,
    make_image_bundle,
    make_signal_bundle,
    write_video,
)

RECORDING = CALIBRATION / "cwru" / "12k_Drive_End_B007_1_119.mat"
CYCLE = [1, 2, 3, 4]          # classes with min_frames 1: one event per frame


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage run")
    bundle = make_image_bundle(root / "image bundle", size=32)
    flat = write_video(root / "flat.avi",
                       [gray_frame(level_for_class(CYCLE[i % 4])) for i in range(160)])
    rng = np.random.default_rng(0)
    noisy = []
    for i in range(40):   # textured frames: JPEGs of several kB each
        level = level_for_class(CYCLE[i % 4])
        noise = rng.integers(-12, 13, size=(96, 128, 3))
        noisy.append(np.clip(level + noise, 0, 255).astype(np.uint8))
    textured = write_video(root / "textured.avi", noisy)
    return bundle, flat, textured


@pytest.fixture(scope="module")
def signal_bundle(tmp_path_factory):
    return make_signal_bundle(tmp_path_factory.mktemp("storage signal") / "signal bundle")


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size)`` -> a fresh tmpfs of that size (unmounted after the test)."""
    mounts = []

    def mount(size: str = "64k", name: str = "disk"):
        if shutil.which("mount") is None:
            pytest.skip("no mount command: cannot make a small tmpfs for full-disk tests")
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(where)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"mount -t tmpfs refused ({done.stderr.strip() or done.returncode}):"
                        f" full-disk tests need root")
        mounts.append(where)
        return where

    yield mount
    for where in reversed(mounts):
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk, leave: int = 0):
    """Fill ``disk`` with a filler file, then give back ``leave`` bytes (page-rounded)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


def whole_lines(path) -> list[dict]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "a cut line at the end of the log"
    return [json.loads(line) for line in data.splitlines()]


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


# ----------------------------------------------------------------------------- JSONL log

def test_log_on_a_disk_that_fills_mid_run_recovers_when_space_is_freed(media, small_disk):
    bundle, video, _ = media
    disk = small_disk("64k")
    log = disk / "events.jsonl"
    filler = fill(disk, leave=12 * 1024)
    echoed = []

    def echo(line):
        echoed.append(line)
        storage = [i for i, l in enumerate(echoed) if "FAULT storage" in l]
        if storage and len(echoed) == storage[0] + 20 and filler.exists():
            filler.unlink()                 # the operator frees space mid-run

    summary = run_logged(bundle, plan_from_keywords("camera", str(video), min_frames=1),
                         Logging(log=str(log), fsync="every",
                                 storage=StorageOptions(retry_s=0)), echo=echo)
    assert summary.processed == summary.read == 160            # the run went on
    events = whole_lines(log)
    faults = [e for e in events if e.get("fault") == "storage"]
    assert [f["state"] for f in faults] == ["start", "end"]
    assert faults[0]["sink"] == "log" and "ENOSPC" in faults[0]["error"]
    assert faults[0]["frame"] < faults[1]["frame"]
    defects = [e["frame"] for e in events if e["type"] == "defect"]
    assert defects == list(range(160))           # late ones written in order, none lost
    assert len(events) == len(echoed)
    assert summary.extra["unstored"] == 0
    assert "stored late" in summary.extra["storage"]
    assert summarize_events(log)["faults"] == {"storage": 1}


def test_log_on_a_full_disk_counts_what_it_could_not_store(media, small_disk, capsys,
                                                            tmp_path):
    bundle, video, _ = media
    disk = small_disk("64k")
    log = disk / "events.jsonl"
    fill(disk, leave=8 * 1024)
    code, out, err = _cli(capsys, "run", "camera", bundle, "--source", video, "--log", log,
                          "--min-frames", "1", "--json", tmp_path / "summary.json")
    assert code == 0, err
    assert "Traceback" not in err and err == ""
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["processed"] == 160
    events = whole_lines(log)
    assert 0 < len(events) < 160
    assert summary["extra"]["unstored"] > 0
    echoed = [l for l in out.splitlines() if l[:4].isdigit()]   # one line per event
    assert len(events) + summary["extra"]["unstored"] == len(echoed)
    assert "FAULT storage" in out and "ENOSPC" in out
    assert "events not stored" in out          # the printed summary says so


def test_cut_write_is_taken_back_and_a_full_backlog_drops_oldest(small_disk):
    disk = small_disk("64k")
    path = disk / "events.jsonl"
    with EventLog(path, fsync="never", backlog=3, retry_s=0) as log:
        log.write({"time": "t", "frame": 0})
        good = path.stat().st_size
        filler = fill(disk, leave=4096)
        log.write({"time": "t", "frame": 1, "pad": "x" * 10_000})   # half fits: cut back
        assert path.stat().st_size == good and not log.health.ok
        assert "ENOSPC" in log.health.error
        for i in range(2, 6):
            log.write({"time": "t", "frame": i, "pad": "x" * 10_000})
        assert log.health.unstored == 2 and log.health.pending == 3
        filler.unlink()
        log.poll()
        assert log.health.ok and log.health.late == 3
    assert [e["frame"] for e in whole_lines(path)] == [0, 3, 4, 5]


@pytest.mark.parametrize("kind", ["camera", "vibration"])
def test_stop_on_storage_error_exits_2_with_one_line(kind, media, signal_bundle, small_disk,
                                                     capsys, tmp_path):
    bundle, video, _ = media
    disk = small_disk("64k")
    log = disk / "events.jsonl"
    fill(disk, leave=4096)
    if kind == "camera":
        args = [bundle, "--source", video, "--min-frames", "1"]
    else:
        args = [signal_bundle, "--source", RECORDING, "--hop", "1024", "--threshold", "0"]
    summary = tmp_path / "summary.json"            # on another disk, with room
    code, out, err = _cli(capsys, "run", kind, *args, "--log", log,
                          "--on-storage-error", "stop", "--quiet", "--json", summary)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "ENOSPC" in lines[0] and "--on-storage-error stop" in lines[0]
    assert lines[0].startswith("error: cannot store to log")
    whole_lines(log)
    assert f"{kind} run" not in out       # stopped: no summary printed
    written = json.loads(summary.read_text())   # but the --json one is written
    assert written["source"] and written["extra"]["storage"] != "ok", written


# ----------------------------------------------------------------------------- SQLite

def test_sqlite_on_a_full_disk(media, small_disk, tmp_path):
    bundle, video, _ = media
    disk = small_disk("8m")       # SQLite's WAL grows to ~4 MB before it is reused
    db = disk / "events.db"
    filler = fill(disk, leave=64 * 1024)   # room to open (WAL, shared memory), not to run
    echoed = []
    summary = run_logged(bundle, plan_from_keywords("camera", str(video), min_frames=1,
                                                    probabilities=True),
                         Logging(sqlite=str(db), storage=StorageOptions(retry_s=0)),
                         echo=echoed.append)
    assert summary.processed == 160
    assert summary.extra["unstored"] > 0 and "SQLITE_FULL" in summary.extra["storage"]
    assert any("FAULT storage" in line for line in echoed)
    filler.unlink()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.close()
    assert rows > 0 and rows + summary.extra["unstored"] == len(echoed)
    # the same run on the freed disk: everything stored
    summary = run_logged(bundle, plan_from_keywords("camera", str(video), min_frames=1),
                         Logging(sqlite=str(db)))
    assert summary.extra["unstored"] == 0 and summary.extra["storage"] == "ok"


def test_sqlite_that_cannot_open_on_a_full_disk_starts_failing_and_catches_up(
        small_disk, media, capsys):
    bundle, video, _ = media
    disk = small_disk("1m")
    db = disk / "events.db"
    filler = fill(disk)
    run = ["run", "camera", bundle, "--source", video, "--sqlite", db, "--min-frames", "1"]
    code, out, err = _cli(capsys, *run, "--on-storage-error", "stop", "--quiet")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "SQLITE_FULL" in err or "SQLITE_IOERR" in err
    code, out, err = _cli(capsys, *run, "--max-frames", "10")
    assert code == 0 and err == "" and "FAULT storage" in out, err
    assert "sqlite: 11 events not stored" in out      # 10 events and the fault itself
    sink = SqliteSink(db, retry_s=0)          # no InputError: the disk is the trouble
    assert not sink.health.ok and sink.db is None
    for i in range(5):
        sink.write({"time": "2026-01-01T00:00:00.000Z", "type": "defect", "class": "a",
                    "frame": i})
    assert sink.health.pending == 5
    filler.unlink()
    sink.write({"time": "2026-01-01T00:00:00.000Z", "type": "defect", "class": "a",
                "frame": 5})
    assert sink.health.ok and sink.health.late == 6
    sink.close()
    con = sqlite3.connect(db)
    assert [r[0] for r in con.execute("SELECT idx FROM events ORDER BY id")] == list(range(6))
    con.close()
    filler = fill(disk)
    sink = SqliteSink(db, retry_s=0)          # failing at open, nothing pending
    assert not sink.health.ok
    filler.unlink()
    sink.write({"time": "2026-01-01T00:00:00.000Z", "type": "defect", "frame": 6})
    assert sink.health.ok and sink.health.stored == 1
    sink.close()


def test_sqlite_retention(tmp_path, media, capsys):
    db = tmp_path / "events.db"
    now = time.gmtime()
    recent = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", now)
    with SqliteSink(db) as sink:
        for i in range(5):
            sink.write({"time": f"2020-01-0{i + 1}T00:00:00.000Z", "type": "defect",
                        "class": "old", "frame": i})
        sink.write({"time": recent, "type": "defect", "class": "new", "frame": 9})
    with SqliteSink(db, keep_days=30, prune_every_s=0) as sink:   # pruned at open
        assert sink.pruned == 5
        sink.write({"time": "2021-01-01T00:00:00.000Z", "type": "defect",
                    "class": "old", "frame": 10})
        sink.write({"time": recent, "type": "defect", "class": "new", "frame": 11})
        assert sink.pruned == 6                 # periodic: the old row went with a write
    con = sqlite3.connect(db)
    assert con.execute("SELECT class, idx FROM events ORDER BY id").fetchall() == \
        [("new", 9), ("new", 11)]
    con.close()
    bundle, video, _ = media
    with SqliteSink(db) as sink:
        sink.write({"time": "2020-06-01T00:00:00.000Z", "type": "defect", "class": "old"})
    code, _, err = _cli(capsys, "run", "camera", bundle, "--source", video, "--sqlite", db,
                        "--sqlite-keep-days", "1", "--quiet", "--max-frames", "8",
                        "--min-frames", "1")
    assert code == 0, err
    assert "old" not in summarize_events(db)["by_class"]


# ----------------------------------------------------------------------------- snapshots

def test_snapshots_on_a_full_disk_leave_no_empty_files(media, small_disk, tmp_path):
    bundle, _, video = media
    disk = small_disk("64k")
    snaps = disk / "snaps"
    log = tmp_path / "events.jsonl"
    summary = run_logged(bundle, plan_from_keywords("camera", str(video), min_frames=1,
                                                    snapshots=snaps), Logging(log=str(log)))
    assert summary.processed == 40
    files = sorted(snaps.iterdir())
    jpgs = [f for f in files if f.suffix == ".jpg"]
    assert jpgs and len(jpgs) == len(files)                # no .part left behind
    assert all(f.stat().st_size > 0 and cv2.imread(str(f)) is not None for f in jpgs)
    events = whole_lines(log)
    defects = [e for e in events if e["type"] == "defect"]
    with_snapshot = [e for e in defects if "snapshot" in e]
    assert len(with_snapshot) == len(jpgs) < len(defects) == 40
    assert summary.extra["snapshots_not_saved"] == 40 - len(jpgs)
    storage = [e for e in events if e.get("fault") == "storage"]
    assert storage[0]["state"] == "start" and {e["sink"] for e in storage} == {"snapshots"}
    assert "ENOSPC" in storage[0]["error"]


def test_snapshot_folder_stays_under_its_limit(media, tmp_path, capsys):
    bundle, _, video = media
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    (snaps / "notes.jpg").write_bytes(b"not ours" * 1000)   # never counted nor deleted
    log = tmp_path / "events.jsonl"
    limit_mb = 0.05
    for _ in range(2):       # a second run starts from the walked folder
        code, _, err = _cli(capsys, "run", "camera", bundle, "--source", video, "--log", log,
                            "--min-frames", "1", "--snapshots", snaps, "--quiet",
                            "--snapshots-max-mb", limit_mb)
        assert code == 0, err
    ours = [f for f in snaps.iterdir() if f.name != "notes.jpg"]
    assert sum(f.stat().st_size for f in ours) <= limit_mb * 1024 * 1024
    assert 1 < len(ours) < 80 and (snaps / "notes.jpg").exists()
    last = [e for e in whole_lines(log) if e["type"] == "defect"][-1]
    assert os.path.exists(last["snapshot"])                  # the newest are kept


def test_cameras_sharing_a_snapshot_folder_share_its_limit(media, tmp_path, capsys):
    from edgecnn.deploy.errors import InputError
    from edgecnn.deploy.snapshots import shared_store

    bundle, _, video = media
    snaps = tmp_path / "snaps"
    limit_mb = 0.05
    code, _, err = _cli(capsys, "run", "camera", bundle, "--source", f"left={video}",
                        "--source", f"right={video}", "--log", tmp_path / "events.jsonl",
                        "--min-frames", "1", "--snapshots", snaps, "--quiet",
                        "--snapshots-max-mb", limit_mb)
    assert code == 0, err
    files = list(snaps.iterdir())
    assert sum(f.stat().st_size for f in files) <= limit_mb * 1024 * 1024
    assert {f.name.split("_")[1] for f in files} <= {"left", "right"} and len(files) > 1
    store = shared_store(tmp_path / "other", 1.0)
    assert shared_store(tmp_path / "other", 1.0) is store
    with pytest.raises(InputError, match="shared by cameras with other limits"):
        shared_store(tmp_path / "other", 2.0)


def test_snapshots_older_than_keep_days_are_deleted(media, tmp_path, capsys):
    bundle, video, _ = media
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    day = 86400
    old = [snaps / f"20250101T00000{i}.000Z_f0000000{i}_scratches.jpg" for i in range(3)]
    young = snaps / "20250105T000000.000Z_f00000009_scratches.jpg"
    mine = snaps / "my photo.jpg"
    for path, age in [(p, 10 * day) for p in old] + [(young, day), (mine, 10 * day)]:
        path.write_bytes(b"\xff\xd8jpeg")
        os.utime(path, (time.time() - age, time.time() - age))
    store = SnapshotStore(snaps, keep_days=5)
    assert store.deleted == 3 and not any(p.exists() for p in old)
    assert young.exists() and mine.exists()
    code, _, err = _cli(capsys, "run", "camera", bundle, "--source", video, "--quiet",
                        "--max-frames", "4", "--min-frames", "1", "--snapshots", snaps,
                        "--snapshots-keep-days", "0.5")
    assert code == 0, err
    assert not young.exists() and mine.exists()
    assert len(list(snaps.glob("*_f*.jpg"))) == 4


def test_snapshot_names_are_found_again_whatever_the_class_or_source(tmp_path):
    """A non-ASCII or 240-character class, a long URL as the source: each name is one
    retention finds after a restart (a 'défaut' snapshot was never deleted) and fits the
    file system (a long label made every save fail)."""
    import numpy as np

    from edgecnn.deploy.snapshots import SNAPSHOT_NAME

    store = SnapshotStore(tmp_path)
    image = np.zeros((8, 8), np.uint8)
    saved = [store.save(image, 1, "défaut"), store.save(image, 2, "x" * 240),
             store.save(image, 3, "x" * 239 + "y", source="rtsp://***@h/" + "s" * 300)]
    assert all(path is not None and SNAPSHOT_NAME.match(path.name) for path in saved)
    assert all(len(path.name.encode()) < 255 for path in saved)
    assert saved[1].name.split("_")[-1] != saved[2].name.split("_")[-1]   # still told apart
    # sources whose names differ only in what ASCII cannot hold keep names of their own
    from edgecnn.deploy.snapshots import _safe

    assert _safe("/rec/左.avi") != _safe("/rec/右.avi") and _safe("scratches") == "scratches"
    left, right = (store.save(image, 4, "ok", source=f"/rec/{c}.avi") for c in "左右")
    assert left.name != right.name and left.exists() and right.exists()
    saved += [left, right]
    again = SnapshotStore(tmp_path, keep_days=1e-9)        # a restart: all are found, old
    assert again.deleted == 5 and not any(path.exists() for path in saved)


def test_snapshot_retention_needs_snapshots(media, capsys):
    bundle, video, _ = media
    code, _, err = _cli(capsys, "run", "camera", bundle, "--source", video,
                        "--snapshots-max-mb", "5")
    assert code == 2 and "need --snapshots" in err


# ----------------------------------------------------------------------------- writers

HOLDER = r"""
import sys
from edgecnn.deploy.events import EventLog
log = EventLog(sys.argv[1], fsync="never", rotate_bytes=int(sys.argv[2]))
i = 0
print("open", flush=True)
while sys.stdin.readline():
    for _ in range(50):
        log.write({"time": "2025-01-01T00:00:00.000Z", "type": "defect", "class": "x",
                   "frame": i, "pad": "y" * 100})
        i += 1
    print("wrote", flush=True)
log.close()
"""


def test_a_second_writer_is_refused_and_rotation_holds(media, tmp_path, capsys):
    bundle, video, _ = media
    log = tmp_path / "events.jsonl"
    limit_mb = 0.005
    limit = int(limit_mb * 1024 * 1024)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(log), str(limit)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        for _ in range(3):
            holder.stdin.write("go\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "wrote"
        code, _, err = _cli(capsys, "run", "camera", bundle, "--source", video, "--log", log,
                            "--rotate-mb", limit_mb, "--min-frames", "1", "--quiet")
        assert code == 2 and "Traceback" not in err
        assert "in use by another run" in err and f"pid {holder.pid}" in err
        alias = tmp_path / "alias.jsonl"   # the same file through a link: the same lock
        alias.symlink_to(log)
        code, _, err = _cli(capsys, "run", "camera", bundle, "--source", video, "--log", alias,
                            "--min-frames", "1", "--quiet")
        assert code == 2 and "in use by another run" in err
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "wrote"
    finally:
        holder.stdin.close()
        holder.wait(20)
    assert holder.returncode == 0
    code, _, err = _cli(capsys, "run", "camera", bundle, "--source", video, "--log", log,
                        "--rotate-mb", limit_mb, "--min-frames", "1", "--quiet")
    assert code == 0, err                        # the lock went with the first writer
    files = log_files(log)
    assert len(files) == 6 and all(f.stat().st_size <= limit for f in files)
    for f in files:
        whole_lines(f)


def test_guard_emits_one_fault_per_state_change(tmp_path):
    class Flaky:
        def __init__(self):
            from edgecnn.deploy.storage import StorageHealth
            self.health = StorageHealth("log", "x")
            self.got = []

        def write(self, event):
            self.got.append(event)

        def poll(self, force=False):
            pass

    sink = Flaky()
    faults = []
    guard = StorageGuard([sink], on_fault=faults.append)
    guard.write({"time": "t", "frame": 1, "source": "cam"})
    sink.health.failed(OSError(28, "No space left on device"))
    for i in range(2, 6):
        guard.write({"time": "t", "frame": i, "source": "cam"})
    sink.health.ok = True
    guard.write({"time": "t", "frame": 6, "source": "cam"})
    assert [(f["state"], f["frame"]) for f in faults] == [("start", 2), ("end", 6)]
    assert faults[0]["error"] == "ENOSPC No space left on device"
    assert faults[0]["source"] == "cam" and sink.health.outages == 1


def test_an_existing_snapshot_folder_that_cannot_be_written_fails_at_the_start(small_disk):
    """An existing folder on a read-only file system is refused at the start, as a new
    one there is; before, the run went on and saved no snapshot."""
    disk = small_disk("64k")
    (disk / "shots").mkdir()
    done = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot remount the tmpfs read-only")
    for folder in (disk / "shots", disk / "new"):
        with pytest.raises(InputError, match="Read-only file system"):
            SnapshotStore(folder)
    full = small_disk("64k", name="full")           # a full disk is no reason to refuse
    fill(full)
    assert SnapshotStore(full).saved == 0


# ----------------------------------------------------------------------------- MQTT spool

def test_a_full_spool_never_drops_what_the_client_already_sends(tmp_path):
    """Rows handed to the client (``after``) stay; room is made from the ones not sent yet
    (the cursor used to come from the event's thread, a step behind the sending one: a
    message in flight was dropped and then acknowledged, counted twice)."""
    from edgecnn.deploy.spool import Spool

    spool = Spool(tmp_path / "cam.sqlite", max_rows=3)
    for name in (b"a", b"b", b"c"):
        spool.append("p/cam/events", name)
    handed = spool.after(0, 2)                    # a and b are in flight
    assert [r[2] for r in handed] == [b"a", b"b"]
    spool.append("p/cam/events", b"d")            # full: c (not sent yet) makes room
    assert spool.dropped == 1
    assert [r[2] for r in spool.after(0, 10)] == [b"a", b"b", b"d"]
    spool.append("p/cam/events", b"e")            # all three in flight: e itself goes
    assert spool.dropped == 2
    spool.remove([r[0] for r in handed])
    assert spool.pending == 1 and [r[2] for r in spool.after(0, 10)] == [b"d"]
    spool.close()


def test_an_mqtt_spool_on_a_full_disk_holds_events_in_memory_and_stores_them_later(
        small_disk, monkeypatch):
    # the spool was the one sink a full disk could end the run with (a traceback)
    from edgecnn.deploy import spool as spooling
    from edgecnn.deploy.spool import Spool

    monkeypatch.setattr(spooling, "RETRY_S", 0.0)
    disk = small_disk("256k")
    spool = Spool(disk / "cam.sqlite")
    spool.append("p/cam/events", b"first")
    filler = fill(disk)
    payload = bytes(range(256)) * 4                   # 1 kB each: the disk is full at once
    for i in range(20):
        spool.append("p/cam/events", payload + str(i).encode())
    assert spool.failing is not None and spool.pending == 21 and spool.dropped == 0
    filler.unlink()                                   # room again: stored in order
    rows = spool.after(0, 100)
    assert spool.failing is None
    assert [r[2] for r in rows] == [b"first"] + [payload + str(i).encode() for i in range(20)]
    spool.close()

    fill(disk)                                        # full at the start: the run still runs
    late = Spool(disk / "late.sqlite")
    late.append("p/cam/events", b"x")
    assert late.pending == 1 and late.after(0, 10) == []
    (disk / "filler").unlink()
    assert [r[2] for r in late.after(0, 10)] == [b"x"]
    late.close()
