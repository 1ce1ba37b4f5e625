"""Event log: whole lines even under SIGKILL, repair, rotation, SQLite, summaries."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from edgecnn.deploy.errors import InputError
from edgecnn.deploy.events import (
    EventLog,
    SqliteSink,
    format_event_summary,
    log_files,
    summarize_events,
)

WRITER = r"""
import sys
from edgecnn.deploy.events import EventLog
log = EventLog(sys.argv[1], fsync=sys.argv[2])
big = {f"class_{i}": i / 1000 for i in range(3000)}   # ~60 kB lines: many pages per write
i = 0
while True:
    log.write({"time": "2025-01-01T00:00:00.000Z", "type": "defect", "class": "scratches",
               "frame": i, "probabilities": big, "note": "x" * (i % 5000)})
    i += 1
"""


@pytest.mark.parametrize("fsync", ["never", "every"])
def test_sigkill_leaves_only_whole_lines(tmp_path, fsync):
    path = tmp_path / "kill me" / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), fsync])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size > 3_000_000:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    # Linux may cut a large write() short when SIGKILL lands inside it (on a loaded
    # machine it does): the next writer to open the log removes the cut line
    with EventLog(path, fsync=fsync):
        pass
    data = path.read_bytes()
    assert len(data) > 2_900_000 and data.endswith(b"\n")
    frames = [json.loads(line)["frame"] for line in data.splitlines()]
    assert frames == list(range(len(frames)))


def test_partial_tail_is_trimmed_on_open(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        log.write({"time": "2025-01-01T00:00:00Z", "class": "a", "frame": 0})
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"time": "2025-01-01T00:00:01Z", "cla')   # power cut mid-line
    with EventLog(path) as log:
        assert log.trimmed_bytes == len(b'{"time": "2025-01-01T00:00:01Z", "cla')
        log.write({"time": "2025-01-01T00:00:02Z", "class": "b", "frame": 1})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["class"] for e in lines] == ["a", "b"]
    # the cut bytes were the user's: kept beside the log, however many (here 100 kB of
    # junk appended by another program), never only deleted
    junk = bytes(range(1, 256)).replace(b"\n", b"") * 400
    path.write_bytes(path.read_bytes() + junk)
    with EventLog(path) as log:
        assert log.trimmed_bytes == len(junk)
    assert len(path.read_text().splitlines()) == 2
    assert (tmp_path / "events.jsonl.torn").read_bytes() == \
        b'{"time": "2025-01-01T00:00:01Z", "cla\n' + junk + b"\n"



def test_a_cut_tail_that_cannot_be_moved_stays_in_the_log_as_one_bad_line(tmp_path):
    from edgecnn.deploy.events import summarize_events

    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        log.write({"time": "2025-01-01T00:00:00Z", "class": "a", "frame": 0})
    cut = b'{"time": "2025-01-01T00:00:01Z", "cla'
    path.write_bytes(path.read_bytes() + cut)
    (tmp_path / "events.jsonl.torn").mkdir()         # cannot be written, as on a full disk
    with EventLog(path) as log:
        assert log.trimmed_bytes == 0
        log.write({"time": "2025-01-01T00:00:02Z", "class": "b", "frame": 1})
    assert path.read_bytes().splitlines()[1] == cut
    summary = summarize_events(path)
    assert summary["by_class"] == {"a": 1, "b": 1} and summary["bad_lines"] == 1
    # a log of one cut line and nothing else: cut as before (kept, it would be no log)
    only = tmp_path / "only.jsonl"
    only.write_bytes(b'{"id":"1","time":"2025-01-01T00:00:01Z","cla')   # as written
    (tmp_path / "only.jsonl.torn").mkdir()
    for _ in range(2):                                # and it opens again next time
        with EventLog(only) as log:
            log.write({"time": "2025-01-01T00:00:03Z", "class": "c", "frame": 2})
    assert summarize_events(only)["by_class"] == {"c": 2}


def test_a_whole_last_event_without_its_newline_is_kept(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"time": "2025-01-01T00:00:00Z", "class": "a", "frame": 0}')
    with EventLog(path) as log:
        assert log.trimmed_bytes == 0
        log.write({"time": "2025-01-01T00:00:02Z", "class": "b", "frame": 1})
    assert [json.loads(line)["class"] for line in path.read_text().splitlines()] == ["a", "b"]


def test_rotation_and_summary_across_files(tmp_path):
    path = tmp_path / "log dir" / "events.jsonl"
    with EventLog(path, fsync="never", rotate_bytes=2000, backups=3) as log:
        for i in range(100):
            log.write({"time": f"2025-01-01T{10 + i // 50:02d}:00:{i % 60:02d}.000Z",
                       "type": "defect", "class": "scratches" if i % 3 else "patches",
                       "frame": i, "value": float("nan")})
        log.write({"time": "2025-01-01T12:00:00.000Z", "type": "fault", "fault": "black",
                   "frame": 100})
        rotations = log.rotations
    files = log_files(path)
    assert rotations > 3 and len(files) == 4            # the log + 3 backups kept
    assert all(f.stat().st_size <= 2000 for f in files)
    for f in files:
        for line in f.read_text().splitlines():
            event = json.loads(line)
            assert "NaN" not in line and event.get("value") is None   # NaN -> null
    summary = summarize_events(path)
    kept = sum(len(f.read_text().splitlines()) for f in files) - 1
    assert summary["events"] == kept and summary["faults"] == {"black": 1}
    assert sum(summary["by_class"].values()) == kept
    assert set(summary["by_hour"]) <= {"2025-01-01T10", "2025-01-01T11"}
    assert "per class" in format_event_summary(summary)


def test_sqlite_sink_and_summary(tmp_path):
    db = tmp_path / "events.db"
    with SqliteSink(db) as sink:
        for i in range(5):
            sink.write({"time": f"2025-02-03T0{i}:10:00.000Z", "type": "defect",
                        "class": "inclusion", "frame": i, "region": [0, 0, 10, 10],
                        "confidence": 0.9, "model_sha256": "ab"})
    import sqlite3
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT count(*), min(idx), max(idx) FROM events").fetchone() == (5, 0, 4)
    con.close()
    summary = summarize_events(db)
    assert summary["by_class"] == {"inclusion": 5} and len(summary["by_hour"]) == 5


def test_summary_skips_garbage_and_rejects_missing(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"time": "2025-01-01T00:00:00Z", "class": "a"}\nnot json\n[1,2]\n'
                    + "[" * 5000 + "\n"                                  # past the parser
                    + '{"time": "2025-01-01T00:00:00Z", "class": 123}\n'  # not a class name
                    + '{"time": "notatime", "class": "a"}\n{"time": 12345, "class": "a"}\n'
                    + '{"time": "2026-13-45T99:99:99Z", "class": "a"}\n')   # no such time
    summary = summarize_events(path)
    assert summary["events"] == 1 and summary["bad_lines"] == 7
    assert summary["last"] == "2025-01-01T00:00:00Z"
    db = tmp_path / "events.db"
    with SqliteSink(db) as sink:
        sink.write({"time": "2025-01-01T00:00:00Z", "class": "a", "type": "defect"})
    con = sqlite3.connect(db)
    con.execute("UPDATE events SET data = NULL")
    con.commit()
    con.close()
    assert summarize_events(db)["bad_lines"] == 1
    with pytest.raises(InputError, match="does not exist"):
        summarize_events(tmp_path / "nope.jsonl")
    # a run's --json summary is not an event log; a FIFO is named as one
    (tmp_path / "run.json").write_text(json.dumps({"events": {}, "faults": {}}, indent=2))
    with pytest.raises(InputError, match="is not an edgecnn event log: none of its 4 line"):
        summarize_events(tmp_path / "run.json")
    os.mkfifo(tmp_path / "pipe.jsonl")
    with pytest.raises(InputError, match="is a FIFO"):
        summarize_events(tmp_path / "pipe.jsonl")
    # a folder named like a rotated log is passed over; the real files are summed
    (tmp_path / "events.jsonl.2").mkdir()
    (tmp_path / "events.jsonl.1").write_text('{"time": "2024-12-31T23:00:00Z", "class": "b"}\n')
    summary = summarize_events(path)
    assert summary["events"] == 2 and summary["first"] == "2024-12-31T23:00:00Z"
    with pytest.raises(InputError, match="fsync"):
        EventLog(tmp_path / "x.jsonl", fsync="sometimes")


def test_fsync_policy_syncs_as_named(tmp_path, monkeypatch):
    """every: one fsync per line; interval: at most one per interval; never: none while
    writing (a SIGKILL keeps the page cache, so only counting tells them apart)."""
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    # (policy, interval, fsyncs during 5 writes, fsyncs when the log closes)
    for policy, interval, during, closing in (("every", 3600, 5, 0), ("never", 0, 0, 0),
                                              ("interval", 3600, 0, 1),
                                              ("interval", 0, 5, 0)):
        calls.clear()
        with EventLog(tmp_path / f"{policy}{interval}.jsonl", fsync=policy,
                      fsync_interval=interval) as log:
            for i in range(5):
                log.write({"time": "2025-01-01T00:00:00Z", "class": "a", "i": i})
            assert len(calls) == during, (policy, interval, calls)
        assert len(calls) - during == closing, (policy, interval, calls)


def test_log_is_append_only_between_runs(tmp_path):
    path = tmp_path / "events.jsonl"
    for run in range(3):
        with EventLog(path, fsync="every") as log:
            log.write({"time": "2025-01-01T00:00:00Z", "class": "a", "run": run})
    assert [json.loads(l)["run"] for l in path.read_text().splitlines()] == [0, 1, 2]
    assert oct(path.stat().st_mode & 0o777) == oct(0o644 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_latency_histogram_percentiles_match_numpy_within_its_resolution():
    from edgecnn.deploy.runstats import LatencyHistogram

    rng = np.random.default_rng(3)
    seconds = rng.lognormal(mean=np.log(4e-4), sigma=0.6, size=20000)   # ~0.4 ms frames
    histogram = LatencyHistogram()
    for value in seconds:
        histogram.add(float(value))
    assert histogram.n == len(seconds) and LatencyHistogram().percentile(50) is None
    for q in (50, 99):
        exact = float(np.percentile(seconds * 1000.0, q))
        assert abs(histogram.percentile(q) - exact) / exact < 0.01, q


def test_a_log_path_naming_another_file_is_refused_and_the_file_kept(tmp_path):
    """--log pointed at an SQLite event database, a video or any text that is not an
    event log is refused: appending (and cutting its "partial last line") destroyed it."""
    database = tmp_path / "events.db"
    with SqliteSink(database) as sink:
        sink.write({"time": "2025-01-01T00:00:00Z", "type": "defect", "class": "a"})
    video = tmp_path / "line.avi"
    video.write_bytes(b"RIFF" + os.urandom(5000))
    text = tmp_path / "notes.txt"
    text.write_text("A" * 1000)
    for path, why in ((database, "SQLite database"), (video, "not an event"),
                      (text, "not an event")):
        before = path.read_bytes()
        with pytest.raises(InputError, match=why):
            EventLog(path)
        assert path.read_bytes() == before
    cut = tmp_path / "cut.jsonl"                 # a power loss during the first write
    cut.write_bytes(b'{"id":"0190","time":"2025-01-01T00:00:00Z","ty')
    with EventLog(cut) as log:
        log.write({"time": "2025-01-01T00:00:01Z", "type": "defect", "class": "b"})
    assert [json.loads(line)["class"] for line in cut.read_text().splitlines()] == ["b"]


def test_an_sqlite_file_that_is_no_event_store_is_refused(tmp_path):
    """--sqlite on a damaged database, another program's database or an events table of
    another layout: refused at the start, the file left as it was."""
    good = tmp_path / "events.db"
    with SqliteSink(good) as sink:
        for i in range(200):
            sink.write({"time": "2025-01-01T00:00:00Z", "type": "defect", "class": "a",
                        "frame": i, "note": "x" * 200})
    damaged = tmp_path / "damaged.db"
    data = bytearray(good.read_bytes())
    assert len(data) >= 3 * 4096
    data[4096:8192] = os.urandom(4096)          # page 2 overwritten
    damaged.write_bytes(bytes(data))
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE foo (x)")
    layout = tmp_path / "layout.db"
    with sqlite3.connect(layout) as db:
        db.execute("CREATE TABLE events (a)")
    for path, why in ((damaged, "damaged SQLite database"), (other, "another program's"),
                      (layout, "without the columns time")):
        before = path.read_bytes()
        with pytest.raises(InputError, match=why):
            SqliteSink(path)
        assert path.read_bytes() == before, path
    with SqliteSink(good) as sink:                 # its own store opens as before
        sink.write({"time": "2025-01-01T00:00:01Z", "type": "defect", "class": "b"})
