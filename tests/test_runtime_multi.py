"""Several sources in one process: every source processed, events naming their sources."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import cv2
import pytest

from edgecnn.deploy.camera import CameraPipeline
from edgecnn.deploy.engine import OnnxRunner
from edgecnn.deploy.errors import InputError
from edgecnn.deploy.multi import run_many
from edgecnn.deploy.options import Logging, plan_from_keywords
from edgecnn.deploy.tiles import parse_roi
from runtime_helpers import (
    CALIBRATION,
    NEU_CLASSES,
    gray_frame,
    level_for_class,
    make_image_bundle,
    make_signal_bundle,
    neu_images,
    write_video,
)

NORMAL_48K = CALIBRATION / "cwru" / "normal_0_97.mat"


@pytest.fixture(scope="module")
def bright_bundle(tmp_path_factory):
    return make_image_bundle(tmp_path_factory.mktemp("multi") / "bundle", size=32)


def _video(path, classes, hold=4):
    # flat frames of mid gray levels (0 and 5 would be black / overexposed faults)
    frames = [gray_frame(level_for_class(c)) for c in classes for _ in range(hold)]
    return write_video(path, frames)


def test_two_cameras_and_a_recording_in_one_process(bright_bundle, tmp_path):
    signal_bundle = make_signal_bundle(tmp_path / "signal", window_length=2048)
    first = _video(tmp_path / "a.avi", [1, 2, 3])
    second = _video(tmp_path / "b.avi", [4, 3, 2, 1, 4])
    log = tmp_path / "events.jsonl"
    before = cv2.getNumThreads()
    summaries = run_many(
        [(bright_bundle, plan_from_keywords("camera", str(first), min_frames=2, name="cam-a")),
         (bright_bundle, plan_from_keywords("camera", str(second), min_frames=2, name="cam-b")),
         (signal_bundle, plan_from_keywords("vibration", str(NORMAL_48K), name="pump",
                                            threshold=0.0, max_windows=20))],
        Logging(log=str(log)))
    assert cv2.getNumThreads() == before
    a, b, pump = summaries
    assert (a.source, b.source, pump.source) == ("cam-a", "cam-b", "pump")
    assert a.processed == 12 and b.processed == 20 and pump.read == 20
    assert a.stop_reason == b.stop_reason == "end of source"
    assert pump.stop_reason == "max windows reached"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    by_source = {}
    for event in events:
        by_source.setdefault(event["source"], []).append(event)
    assert [e["class"] for e in by_source["cam-a"]] == list(NEU_CLASSES[1:4])
    assert [e["class"] for e in by_source["cam-b"]] == [NEU_CLASSES[i] for i in (4, 3, 2, 1, 4)]
    assert len(by_source["pump"]) >= 1 and all("window" in e for e in by_source["pump"])


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed: "
                    "it joins two MJPEG videos of different sizes")
def test_a_camera_changing_resolution_is_a_fault_and_the_others_go_on(bright_bundle, tmp_path):
    # 96x128 frames, then 60x80 ones (a camera reconfigured), then 96x128 again: one file
    parts = [write_video(tmp_path / "p1.avi", [gray_frame(level_for_class(1))] * 6),
             write_video(tmp_path / "p2.avi", [gray_frame(level_for_class(2), (60, 80))] * 6),
             write_video(tmp_path / "p3.avi", [gray_frame(level_for_class(3))] * 6)]
    (tmp_path / "list.txt").write_text("".join(f"file '{p}'\n" for p in parts))
    joined = tmp_path / "changing.avi"
    subprocess.run([shutil.which("ffmpeg"), "-hide_banner", "-loglevel", "error", "-f", "concat",
                    "-safe", "0", "-i", str(tmp_path / "list.txt"), "-c", "copy", str(joined)],
                   check=True, timeout=60)
    other = _video(tmp_path / "other.avi", [4, 1])
    log = tmp_path / "events.jsonl"
    roi = parse_roi("10,10,100,70")  # fits 128x96, not 80x60
    summaries = run_many(
        [(bright_bundle, plan_from_keywords("camera", str(joined), min_frames=2, name="top",
                                            roi=roi)),
         (bright_bundle, plan_from_keywords("camera", str(other), min_frames=2, name="side"))],
        Logging(log=str(log)))
    top, side = summaries
    assert top.read == 18 and top.processed == 12 and top.faults["resolution"] == 1
    assert top.extra["fault_frames"] == {"resolution": 6}
    assert side.processed == 8 and side.stop_reason == "end of source"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    faults = [e for e in events if e["type"] == "fault" and e["source"] == "top"]
    # it starts where the frames shrink and ends where they fit again
    assert [(e["fault"], e["state"], e["frame"]) for e in faults] == [
        ("resolution", "start", 6), ("resolution", "end", 12)]
    assert faults[1]["frames"] == 6
    assert "80x60 frames: --roi 10,10,100,70 does not fit in the 80x60 frame" in faults[0]["detail"]
    classes = [e["class"] for e in events if e["type"] == "defect" and e["source"] == "top"]
    assert classes == [NEU_CLASSES[1], NEU_CLASSES[3]]
    # on the first frame the same regions are the user's mistake: a clear error at once
    with pytest.raises(InputError, match="does not fit in the 80x60 frame"):
        run_many([(bright_bundle, plan_from_keywords("camera", str(parts[1]), roi=roi))],
                 Logging())


def test_a_source_that_fails_to_open_leaves_no_empty_log(bright_bundle, tmp_path):
    from edgecnn.deploy.errors import SourceError

    good = _video(tmp_path / "a.avi", [1, 2])
    fresh, sqlite = tmp_path / "fresh.jsonl", tmp_path / "fresh.db"
    kept = tmp_path / "kept.jsonl"
    earlier = ('{"id":"0190a000-0000-7000-8000-000000000000","time":"2025-01-01T00:00:00.000Z",'
               '"type":"defect","source":"cam","frame":3,"class":"crazing"}\n')
    kept.write_text(earlier)
    for log, db in ((fresh, sqlite), (kept, None)):
        with pytest.raises(SourceError):
            run_many([(bright_bundle, plan_from_keywords("camera", str(good))),
                      (bright_bundle, plan_from_keywords("camera", str(tmp_path / "no.avi")))],
                     Logging(log=str(log), sqlite=db and str(db)))
    assert not fresh.exists() and not sqlite.exists()
    assert kept.read_text() == earlier                 # an earlier log stays byte for byte
    run_many([(bright_bundle, plan_from_keywords("camera", str(good), min_frames=2))],
             Logging(log=str(fresh)))
    assert fresh.read_text().count("\n") >= 1




def test_a_stopped_run_still_tells_its_reading_threads_cpu(bright_bundle, tmp_path):
    # the reading thread tells its CPU time when it ends: each source is closed before
    # its summary is made (max frames, a duration or SIGTERM stop a source mid-file)
    video = _video(tmp_path / "a.avi", [1, 2, 3, 4] * 10)
    big = write_video(tmp_path / "big.avi", [cv2.resize(gray_frame(level_for_class(c)),
                                                         (400, 400)) for c in [1, 2] * 20])
    alone = [(bright_bundle, plan_from_keywords("camera", str(video), max_frames=20))]
    own_threads = [(bright_bundle, plan_from_keywords("camera", str(big), name=f"cam{i}",
                                                      max_frames=20)) for i in range(2)]
    for summary in run_many(alone) + run_many(own_threads):
        assert summary.stop_reason == "max frames reached"
        assert summary.extra["reader_cpu_ms"] is not None and summary.extra["reader_cpu_ms"] > 0


def test_a_log_another_run_holds_is_never_removed_by_a_failed_start(bright_bundle, tmp_path):
    # the other run created the log after this one looked: refused ("in use"), and the
    # failed start must not then remove it as if it were its own fresh, empty file
    from edgecnn.deploy import multi
    from edgecnn.deploy.events import EventLog

    log = tmp_path / "events.jsonl"
    real_open = multi._run_opened

    def other_run_first(*args, **kwargs):
        other = EventLog(log)
        other.write({"id": "1", "time": "2026-12-04T10:00:00Z", "type": "defect", "class": "a"})
        try:
            return real_open(*args, **kwargs)
        finally:
            other.close()

    multi._run_opened = other_run_first
    try:
        with pytest.raises(InputError, match="in use by another run"):
            run_many([(bright_bundle, plan_from_keywords("camera", str(tmp_path / "no.avi")))],
                     Logging(log=str(log)))
    finally:
        multi._run_opened = real_open
    assert log.read_text().count("\n") == 1
    # the new log opened, then the SQLite store was refused: the empty log goes again
    fresh, foreign = tmp_path / "fresh.jsonl", tmp_path / "notes.db"
    foreign.write_text("not a database")
    with pytest.raises(InputError, match="SQLite"):
        run_many([(bright_bundle, plan_from_keywords("camera", str(tmp_path / "no.avi")))],
                 Logging(log=str(fresh), sqlite=str(foreign)))
    assert not fresh.exists() and foreign.read_text() == "not a database"


def test_a_source_not_up_yet_names_the_format_this_machine_will_run(bright_bundle,
                                                                    monkeypatch):
    import edgecnn.deploy.hosts as hosts
    from edgecnn.deploy.engine import EngineOptions
    from edgecnn.deploy.multi import WaitingPipeline
    from edgecnn.deploy.runstats import StopFlag

    asked = []

    def chosen(bundle, batch=1, threads=1):
        asked.append((batch, threads))
        return "onnx", None
    monkeypatch.setattr(hosts, "selected_format", chosen)
    plan = plan_from_keywords("camera", "rtsp://127.0.0.1:9/none", tiles=(2, 3),
                              options=EngineOptions(threads=2))
    stop = StopFlag()
    stop.set("stopped before it was tried")
    waiting = WaitingPipeline(bright_bundle, plan, "refused", stop)
    assert asked == [(6, 2)] and waiting.loop.summary.model_format == "onnx"



def test_a_source_that_opens_after_the_run_closed_is_let_go_at_once(bright_bundle,
                                                                     monkeypatch):
    # its opening outlived close()'s wait: the pipeline it made is closed, not leaked
    import edgecnn.deploy.multi as multi
    from edgecnn.deploy.runstats import StopFlag

    release, closed = threading.Event(), []

    class Opened:
        loop = None

        def close(self):
            closed.append(True)

    def slow_open(*args, **kwargs):
        release.wait(10)
        return Opened()

    monkeypatch.setattr(multi, "open_pipeline", slow_open)
    monkeypatch.setattr(multi.threading.Thread, "join", lambda self, timeout=None: None)
    plan = plan_from_keywords("camera", "rtsp://127.0.0.1:9/none")
    waiting = multi.WaitingPipeline(bright_bundle, plan, "refused", StopFlag())
    waiting.close()                       # the run ends while the source is still opening
    release.set()
    _wait = time.monotonic() + 5
    while not closed and time.monotonic() < _wait:
        time.sleep(0.01)
    assert closed == [True] and waiting.real is None


def _defects(log):
    out = {}
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "defect":
            out.setdefault(event["source"], []).append((event["frame"], event["class"]))
    return out


def test_cameras_in_one_process_share_model_runs_and_keep_their_own_events(tmp_path,
                                                                          monkeypatch):
    # three cameras of real NEU products in different orders, through the shipped model
    images = [image for _, image in neu_images(per_class=2)]
    videos = [write_video(tmp_path / f"cam{k}.avi",
                          [image for image in images[k:] + images[:k] for _ in range(3)])
              for k in range(3)]

    def plans():
        return [("neu", plan_from_keywords("camera", str(v), name=f"cam{k}", fmt="onnx-int8",
                                           min_frames=2))
                for k, v in enumerate(videos)]

    alone = {}
    for k, source in enumerate(plans()):
        run_many([source], Logging(log=str(tmp_path / f"alone{k}.jsonl")))
        alone.update(_defects(tmp_path / f"alone{k}.jsonl"))
    runs, model_s = [], []
    original = OnnxRunner.run

    def counted(self):
        runs.append(self.batch)
        started = time.perf_counter()
        try:
            return original(self)
        finally:
            model_s.append(time.perf_counter() - started)

    inference = []
    complete = CameraPipeline.complete

    def completed(self, frame, probs, inference_s, *rest):
        inference.append(inference_s)
        return complete(self, frame, probs, inference_s, *rest)

    monkeypatch.setattr(OnnxRunner, "run", counted)
    monkeypatch.setattr(CameraPipeline, "complete", completed)
    summaries = run_many(plans(), Logging(log=str(tmp_path / "together.jsonl")))
    assert [s.processed for s in summaries] == [len(images) * 3] * 3
    # the same events, frame for frame, as each camera alone
    assert _defects(tmp_path / "together.jsonl") == alone
    assert len(alone) == 3 and all(len(events) >= 6 for events in alone.values())
    # frames of several cameras went through the model in one run
    assert max(runs) > 1 and len(runs) < sum(s.processed for s in summaries)
    # each frame's inference time is its share of the run: summed over the cameras, the
    # time the model ran (not once per frame of a batch)
    assert len(inference) == sum(s.processed for s in summaries)
    assert sum(inference) == pytest.approx(sum(model_s), rel=0.2)


def test_small_frame_cameras_are_read_by_one_thread(bright_bundle, tmp_path):
    videos = [_video(tmp_path / f"{k}.avi", [1, 2, 3, 4][k:] + [1, 2, 3, 4][:k])
              for k in range(3)]
    seen = set()

    def on_event(event):
        seen.update(t.name for t in threading.enumerate() if t.name.startswith("edgecnn-"))

    summaries = run_many([(bright_bundle, plan_from_keywords("camera", str(v), min_frames=2,
                                                             name=f"cam{k}"))
                          for k, v in enumerate(videos)],
                         Logging(log=str(tmp_path / "events.jsonl")), on_event=on_event)
    assert [s.processed for s in summaries] == [16, 16, 16]
    assert all(s.stop_reason == "end of source" for s in summaries)
    assert all(s.extra["reader_cpu_ms"] for s in summaries)
    assert "edgecnn-shared-reading" in seen and "edgecnn-VideoFileSource" not in seen
    deadline = time.monotonic() + 5    # the thread ends with its last file
    while [t for t in threading.enumerate() if t.name == "edgecnn-shared-reading"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_sources_clock_starts_when_every_source_is_open(bright_bundle, tmp_path,
                                                          monkeypatch):
    # a slow opening (a first start timing the formats takes seconds) is nobody's run time:
    # not in the frames/s of the sources opened before it, nor in their --duration
    import edgecnn.deploy.multi as multi

    videos = [_video(tmp_path / f"{k}.avi", [1, 2]) for k in range(2)]
    opened = multi.open_pipeline

    def slow_second(bundle, plan, **kwargs):
        if plan.source.name == "cam1":
            time.sleep(2.0)
        return opened(bundle, plan, **kwargs)

    monkeypatch.setattr(multi, "open_pipeline", slow_second)
    first, second = run_many(
        [(bright_bundle, plan_from_keywords("camera", str(v), min_frames=2, name=f"cam{k}",
                                            duration=1.5)) for k, v in enumerate(videos)],
        Logging(log=str(tmp_path / "events.jsonl")))
    assert first.processed == second.processed == 8
    assert first.stop_reason == "end of source"       # not "duration reached"
    assert first.elapsed_s < 2.0 and first.fps > 8 / 2.0   # the 2 s opening is not in it
