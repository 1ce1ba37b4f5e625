"""Camera runtime on generated videos, fake live sources and calibration NEU images."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from edgecnn.deploy.bundle import Bundle
from edgecnn.deploy.camera import FramePreparer, draw_overlay, run_camera
from edgecnn.deploy.engine import open_engine
from edgecnn.deploy.errors import InputError, SourceError
from edgecnn.deploy.events import EventLog
from edgecnn.deploy.faults import FaultConfig, FrameFaultDetector
from edgecnn.deploy.frames import (
    LatestFrameSource,
    SharedReading,
    VideoFileSource,
    open_frame_source,
)
from edgecnn.deploy.preprocess import preprocess_image
from edgecnn.deploy.reconnect import Backoff
from edgecnn.deploy.tiles import Region, parse_grid, parse_roi, parse_tiles, plan_regions
from runtime_helpers import (
    NEU_CLASSES,
    gray_frame,
    image_spec,
    level_for_class,
    make_image_bundle,
    neu_images,
    write_video,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("camera run")   # a space in the path


@pytest.fixture(scope="module")
def bright_bundle(workdir):
    return make_image_bundle(workdir / "bright bundle", size=32)


@pytest.fixture(scope="module")
def conv_bundle(workdir):
    return make_image_bundle(workdir / "conv bundle", size=64, kind="conv")


def _levels_video(path, classes, fps=25.0, size=(96, 128)):
    frames = [gray_frame(level_for_class(c) if c is not None else 0, size) for c in classes]
    return write_video(path, frames, fps)


def test_video_file_gives_every_frame_in_order(workdir):
    levels = list(range(20, 240, 10))
    video = write_video(workdir / "levels.avi", [gray_frame(v) for v in levels])
    with VideoFileSource(video, prefetch=2) as src:
        seen = []
        while (frame := src.read(1.0)) is not None or not src.exhausted:
            if frame is not None:
                seen.append((frame.index, int(round(frame.image.mean()))))
                time.sleep(0.002)   # a slow consumer must not lose frames from a file
    assert [i for i, _ in seen] == list(range(len(levels)))
    assert all(abs(m - v) <= 2 for (_, m), v in zip(seen, levels))
    assert src.stats.dropped == 0 and src.stats.read == len(levels)



def test_file_source_decodes_into_a_small_ring_and_prepares_in_its_thread(workdir):
    levels = list(range(20, 240, 10))
    video = write_video(workdir / "ring.avi", [gray_frame(v) for v in levels])
    threads, held, slots, seen = set(), {}, set(), []

    def prepare(image, previous, waiting):
        threads.add(threading.get_ident())
        return int(round(image.mean()))

    with VideoFileSource(video, prefetch=2, prepare=prepare) as src:
        while (frame := src.read(1.0)) is not None or not src.exhausted:
            if frame is not None:
                slots.add(id(frame))
                held[frame.image.ctypes.data] = frame.image   # kept: no address reuse
                seen.append((frame.index, frame.work, int(round(frame.image.mean()))))
                time.sleep(0.002)
    assert [i for i, _, _ in seen] == list(range(len(levels)))
    assert all(work == mean and abs(mean - v) <= 2 for (_, work, mean), v in zip(seen, levels))
    # prefetch + 2 slots, decoded into again and again: no image allocated per frame
    assert len(slots) <= 4 and len(held) <= 4
    assert threads and threading.get_ident() not in threads


def _drain(src, limit=None, pause=0.0):
    seen = []
    while (frame := src.read(1.0)) is not None or not src.exhausted:
        if frame is not None:
            seen.append((frame.index, frame.work, int(round(frame.image.mean()))))
            if limit is not None and len(seen) == limit:
                break
            time.sleep(pause)
    return seen


def test_small_frame_files_share_one_reading_thread_and_lose_nothing(workdir):
    levels = list(range(20, 240, 10))
    videos = [write_video(workdir / f"shared{k}.avi", [gray_frame(v) for v in levels[k:]])
              for k in range(3)]
    threads = []

    def prepare(image, previous, waiting):
        threads.append(threading.current_thread().name)
        return int(round(image.mean()))

    shared = SharedReading()
    sources = [VideoFileSource(v, prefetch=2, prepare=prepare, shared=shared) for v in videos]
    big = VideoFileSource(write_video(workdir / "big.avi", [gray_frame(v, (480, 640))
                                                            for v in levels[:4]]),
                          prepare=prepare, shared=shared)
    assert all(src.shares_reading for src in sources) and not big.shares_reading
    # the slow consumer of one file does not hold up the others: theirs read on meanwhile
    results = [None] * 3

    def consume(k):
        results[k] = _drain(sources[k], pause=0.01 if k == 0 else 0.0)

    workers = [threading.Thread(target=consume, args=(k,)) for k in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [len(_drain(big))] == [4]
    for k, (src, seen) in enumerate(zip(sources, results)):
        assert [i for i, _, _ in seen] == list(range(len(levels) - k))
        assert all(work == mean and abs(mean - v) <= 2
                   for (_, work, mean), v in zip(seen, levels[k:]))
        assert src.exhausted and src.stats.read == len(levels) - k and src.stats.cpu_s > 0
        src.close()
    big.close()
    assert set(threads) == {"edgecnn-shared-reading", "edgecnn-VideoFileSource"}
    assert threads.count("edgecnn-VideoFileSource") == 4      # the big file's own thread


def test_a_shared_reading_file_closed_early_leaves_the_others_reading(workdir):
    levels = list(range(20, 240, 10))
    video = write_video(workdir / "early.avi", [gray_frame(v) for v in levels])
    shared = SharedReading()
    first = VideoFileSource(video, prefetch=2, shared=shared)
    second = VideoFileSource(video, prefetch=2, shared=shared)
    assert len(_drain(first, limit=3)) == 3
    started = time.monotonic()
    first.close()                     # while the shared thread still reads the file
    assert time.monotonic() - started < 2
    assert [i for i, _, _ in _drain(second)] == list(range(len(levels)))
    second.close()
    # a file that fails to prepare ends alone, its error raised by its read
    def prepare(image, previous, waiting):
        raise InputError("cannot prepare this one")

    failing = VideoFileSource(video, prepare=prepare, shared=shared)
    sound = VideoFileSource(video, shared=shared)
    with pytest.raises(InputError, match="cannot prepare"):
        _drain(failing)
    assert len(_drain(sound)) == len(levels)
    failing.close()
    sound.close()


def test_the_shared_reading_thread_gives_work_only_while_consumers_keep_up_and_fails_alone(
        workdir, monkeypatch):
    levels = list(range(20, 240, 10))
    video = write_video(workdir / "polling.avi", [gray_frame(v) for v in levels])
    told = []

    def prepare(image, previous, waiting):
        told.append(waiting)
        return 0

    shared = SharedReading()
    sources = [VideoFileSource(video, prefetch=2, prepare=prepare, shared=shared)
               for _ in range(3)]
    for src in sources:
        assert src.read(1.0) is not None
    read_all = len(told)
    calls = []
    advance = VideoFileSource._advance
    monkeypatch.setattr(VideoFileSource, "_advance",
                        lambda self: calls.append(1) or advance(self))
    time.sleep(0.5)                   # every ring full, nobody reads
    assert len(calls) < 30            # waits for a slot (woken), no polling meanwhile
    # a frame's work is left to the consumers while the rings are nearly empty (they keep
    # up), and kept once frames pile up unread (they are behind): never given back after
    assert told[0] and not told[-1]
    unread = told[read_all:]
    assert unread == sorted(unread, reverse=True)
    # an error escaping one file's turn ends that file alone
    broken = sources[0]

    def boom():
        raise OSError("the capture cannot be released")

    monkeypatch.setattr(broken._reader, "release", boom)
    broken._stop.set()
    shared.wake()
    assert [i for i, _, _ in _drain(sources[1])] == list(range(1, len(levels)))
    assert broken._left.wait(2)
    with pytest.raises(OSError, match="cannot be released"):   # handed to its reader
        _drain(broken)
    for src in sources:
        src.close()


def test_an_error_in_the_reading_thread_reaches_the_pipeline(workdir, bright_bundle):
    video = write_video(workdir / "six.avi", [gray_frame(v) for v in range(40, 100, 10)])
    calls = []

    def prepare(image, previous, waiting):
        calls.append(1)
        if len(calls) == 4:
            raise InputError("frame 3 cannot be prepared")
        return len(calls)

    src = VideoFileSource(video, prepare=prepare)
    got = []
    with pytest.raises(InputError, match="frame 3"):
        while (frame := src.read(1.0)) is not None or not src.exhausted:
            if frame is not None:
                got.append(frame.work)
    src.close()
    assert got == [1, 2, 3] and src.exhausted
    with pytest.raises(InputError, match="does not fit"):
        run_camera(bright_bundle, str(video), roi=Region(0, 0, 500, 40))


def test_preparer_leaves_preprocessing_to_an_idle_pipeline(conv_bundle):
    spec = Bundle.open(conv_bundle).spec
    preparer = FramePreparer(spec, FrameFaultDetector(FaultConfig(frozen_frames=0)),
                             tiles=(1, 2))
    work = None
    for _, image in neu_images(1):
        work = preparer(image, work, waiting=True)
        assert work.fault is None and not work.ready
        preparer.tensors(work)
        expected = np.stack([preprocess_image(r.crop(image), spec) for r in work.regions])
        np.testing.assert_array_equal(work.tensor, expected)
        buffer = work.tensor
        work = preparer(image, work, waiting=False)
        assert work.ready and work.tensor is buffer     # the slot's tensor is reused
        np.testing.assert_array_equal(work.tensor, expected)
    work = preparer(np.zeros((200, 200), np.uint8), work)
    assert work.fault == "black" and not work.ready
    eager = FramePreparer(spec, FrameFaultDetector(), share=False)
    assert eager(neu_images(1)[0][1], None, waiting=True).ready

def test_a_whole_frame_model_resizes_each_frame_once(monkeypatch):
    """With one region that is the whole frame, the tensor and the health features share
    one resize of it into the slot's buffer where the features measure that very view
    (a gray model, bilinear, the frame stretched or of the model's aspect); otherwise the
    features make their own. Either way both equal the offline definitions."""
    from dataclasses import replace

    from edgecnn.deploy.health import image_features

    calls = []
    resize = cv2.resize
    monkeypatch.setattr(cv2, "resize", lambda *a, **k: calls.append(1) or resize(*a, **k))
    features = lambda image, resized=None: image_features(image, (64, 64), resized)  # noqa: E731
    gray = [img for _, img in neu_images(1)][:4]            # 200 x 200
    wide = [np.hstack([img, img[:, :100]]) for img in gray]  # 300 x 200
    area = image_spec(64)
    base = replace(area, image=replace(area.image, interpolation="linear"))
    # resizes per frame: the fault checks' thumbnail, then one for the model's view and
    # the features, or one each
    cases = [(base, gray, 2), (base, wide, 2), (base, [cv2.resize(g, (64, 64)) for g in gray], 1),
             (base, [cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in gray], 2),
             (replace(base, image=replace(base.image, fit="letterbox")), wide, 3),
             (area, gray, 3)]
    for spec, frames, per_frame in cases:
        preparer = FramePreparer(spec, FrameFaultDetector(FaultConfig(frozen_frames=0)),
                                 features=features, share=False)
        slots = [preparer(frames[i], None) for i in range(2)]
        buffers = [w.resized for w in slots]
        for i, frame in enumerate(frames * 2):
            del calls[:]
            work = slots[i % 2] = preparer(frame, slots[i % 2])
            assert work.ready and len(calls) == per_frame, (spec.image, frame.shape, calls)
            plain = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            assert work.features == image_features(plain, (64, 64))
            np.testing.assert_array_equal(work.tensor[0], preprocess_image(frame, spec))
            if spec.image.fit == "stretch":                 # no new buffer per frame
                assert work.resized is buffers[i % 2]
    # the slot's buffer is never a caller's frame: an H x W x 1 frame at the model's size
    # (its view is a view of the frame), then one to resize, in the same slot
    at_size = cv2.resize(gray[0], (64, 64))[:, :, None]
    kept = at_size.copy()
    preparer = FramePreparer(base, FrameFaultDetector(FaultConfig(frozen_frames=0)),
                             features=features, share=False)
    work = None
    for frame in (at_size, wide[1], at_size):
        work = preparer(frame, work)
        np.testing.assert_array_equal(work.tensor[0], preprocess_image(frame, base))
    np.testing.assert_array_equal(at_size, kept)


def test_preparer_converts_a_colour_frame_once_for_a_gray_model(conv_bundle):
    """Fault checks and every tile of a BGR frame use one gray conversion in the slot's
    buffer, and the tensors equal preprocessing each BGR crop offline."""
    spec = Bundle.open(conv_bundle).spec
    preparer = FramePreparer(spec, FrameFaultDetector(FaultConfig(frozen_frames=0)),
                             tiles=(2, 2), share=False)
    work, buffer = None, None
    for _, image in neu_images(1)[:3]:
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        bgr[:, :, 2] = 255 - bgr[:, :, 2]               # a frame that is really in colour
        work = preparer(bgr, work)
        assert work.pixels.shape == image.shape and work.ready
        np.testing.assert_array_equal(work.pixels, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        expected = np.stack([preprocess_image(r.crop(bgr), spec) for r in work.regions])
        np.testing.assert_array_equal(work.tensor, expected)
        assert buffer is None or work.gray is buffer    # no new buffer per frame
        buffer = work.gray


def test_neu_video_through_the_pipeline_equals_offline(workdir, conv_bundle):
    """Frames of calibration images: same probabilities as preprocessing the decoded frame
    (a gray model's MJPG frames are decoded from their packets, as training decodes JPEG
    files: ``cv2.imdecode(..., IMREAD_GRAYSCALE)``)."""
    images = neu_images(2)
    video = write_video(workdir / "neu.avi", [img for _, img in images])
    cap = cv2.VideoCapture(str(video))
    assert cap.set(cv2.CAP_PROP_FORMAT, -1)
    decoded = []
    while True:
        ok, packet = cap.read()
        if not ok:
            break
        decoded.append(cv2.imdecode(packet, cv2.IMREAD_GRAYSCALE))
    cap.release()
    engine = open_engine(conv_bundle)
    spec = Bundle.open(conv_bundle).spec
    offline = engine.predict(np.stack([preprocess_image(f, spec) for f in decoded]))
    got, opencv_threads = [], []
    before = cv2.getNumThreads()

    def record(event):
        got.append(event)
        opencv_threads.append(cv2.getNumThreads())

    summary = run_camera(conv_bundle, str(video), min_frames=1, threshold=0.0,
                         probabilities=True, on_event=record,
                         faults=FaultConfig(frozen_frames=0))
    # OpenCV's pool is held to one thread during the run (its resizes would take the
    # model's core) and given back afterwards
    assert set(opencv_threads) == {1} and cv2.getNumThreads() == before
    assert summary.read == summary.processed == len(images) == len(decoded)
    assert summary.dropped == 0 and summary.corrupt == 0
    assert summary.stop_reason == "end of source"
    defects = [e for e in got if e["type"] == "defect"]
    assert defects, "threshold 0 and min_frames 1 must give events"
    for event in defects:
        probs = np.array([event["probabilities"][c] for c in NEU_CLASSES])
        np.testing.assert_allclose(probs, offline[event["frame"]], atol=1e-5)
        assert event["class"] == NEU_CLASSES[int(np.argmax(offline[event["frame"]]))]


def test_raw_gray_video_arrives_gray_and_classifies_like_offline(workdir, conv_bundle):
    """An uncompressed 8-bit gray video (what a mono camera records) is read as H x W
    frames, pixel for pixel what was written; an MJPG video still arrives as BGR."""
    images = [img for _, img in neu_images(2)]
    raw = workdir / "mono camera.avi"
    writer = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"Y800"), 25.0,
                             images[0].shape[::-1], isColor=False)
    for image in images:
        writer.write(image)
    writer.release()
    with VideoFileSource(raw) as src:
        frame = src.read(5.0)
        assert frame.image.ndim == 2
        np.testing.assert_array_equal(frame.image, images[0])
    with VideoFileSource(write_video(workdir / "colour.avi", images[:2])) as src:
        assert src.read(5.0).image.shape == (*images[0].shape, 3)

    spec = Bundle.open(conv_bundle).spec
    offline = open_engine(conv_bundle).predict(np.stack([preprocess_image(i, spec)
                                                         for i in images]))
    got = []
    summary = run_camera(conv_bundle, str(raw), min_frames=1, threshold=0.0,
                         probabilities=True, on_event=got.append,
                         faults=FaultConfig(frozen_frames=0))
    assert summary.processed == len(images) and summary.corrupt == 0
    for event in (e for e in got if e["type"] == "defect"):
        probs = np.array([event["probabilities"][c] for c in NEU_CLASSES])
        np.testing.assert_allclose(probs, offline[event["frame"]], atol=1e-5)


def test_debounce_faults_and_events(workdir, bright_bundle):
    # class 1 x5, class 2 x2 (too short), class 3 x6, black x4, class 4 x5, white x3
    seq = [1] * 5 + [2] * 2 + [3] * 6 + [None] * 4 + [4] * 5
    frames = [gray_frame(level_for_class(c)) if c is not None else gray_frame(0) for c in seq]
    frames += [gray_frame(255)] * 3
    video = write_video(workdir / "debounce.avi", frames)
    log_path = workdir / "debounce.jsonl"
    with EventLog(log_path, fsync="every") as log:
        summary = run_camera(bright_bundle, str(video), min_frames=3, sinks=[log],
                             snapshots=workdir / "snaps")
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    defects = [(e["frame"], e["class"]) for e in lines if e["type"] == "defect"]
    assert defects == [(2, NEU_CLASSES[1]), (9, NEU_CLASSES[3]), (19, NEU_CLASSES[4])]
    faults = [(e["frame"], e["fault"], e["state"]) for e in lines if e["type"] == "fault"]
    # a fault still open when the file ends gets its end too: every start is paired
    assert faults == [(13, "black", "start"), (17, "black", "end"),
                      (22, "overexposed", "start"), (25, "overexposed", "end")]
    ended = next(e for e in lines if e.get("state") == "end")
    assert ended["frames"] == 4 and ended["since"] <= ended["time"] and ended["duration_s"] >= 0
    last = lines[-1]
    assert last["frames"] == 3 and last["detail"] == "run ended (end of source)"
    # episodes, as logged; frames in each apart
    assert summary.faults["black"] == 1 and summary.faults["overexposed"] == 1
    assert summary.extra["fault_frames"] == {"black": 4, "overexposed": 3}
    assert "black 1 (4 frames), overexposed 1 (3 frames)" in summary.format()
    assert summary.processed == len(frames) - 7
    assert summary.events == {NEU_CLASSES[1]: 1, NEU_CLASSES[3]: 1, NEU_CLASSES[4]: 1}
    sha = json.loads((bright_bundle / "edgecnn.json").read_text())["files"]["onnx"]["sha256"]
    for event in lines:
        assert event["model_sha256"] == sha
        assert event["time"].endswith("Z") and "T" in event["time"]
        if event["type"] == "defect":
            assert event["region"] == [0, 0, 128, 96] and event["latency_ms"] >= 0
            snap = cv2.imread(event["snapshot"])
            assert snap is not None and snap.shape == (96, 128, 3)


def test_ignored_class_and_class_threshold(workdir, bright_bundle):
    # level 74 ~ mean 0.29: class 1 with confidence ~0.8, under a 0.95 threshold
    frames = [gray_frame(74)] * 4 + [gray_frame(level_for_class(2))] * 4 + \
        [gray_frame(level_for_class(3))] * 4
    video = write_video(workdir / "thresholds.avi", frames)
    got = []
    run_camera(bright_bundle, str(video), min_frames=2, on_event=got.append)
    assert [e["class"] for e in got] == list(NEU_CLASSES[1:4])
    assert 0.6 < got[0]["confidence"] < 0.95
    got = []
    run_camera(bright_bundle, str(video), min_frames=2, on_event=got.append,
               class_thresholds={NEU_CLASSES[1]: 0.95}, ignore_classes=[NEU_CLASSES[2]])
    assert [e["class"] for e in got] == [NEU_CLASSES[3]]
    with pytest.raises(InputError, match="unknown class"):
        run_camera(bright_bundle, str(video), ignore_classes=["good"])


def test_tiles_locate_the_defect(workdir, bright_bundle):
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, :100] = level_for_class(1)
    frame[:, 100:] = level_for_class(4)
    video = write_video(workdir / "tiles.avi", [frame] * 3)
    got = []
    summary = run_camera(bright_bundle, str(video), min_frames=3, tiles=(1, 2),
                         on_event=got.append)
    assert sorted((e["tile"], e["class"], tuple(e["region"])) for e in got) == [
        (0, NEU_CLASSES[1], (0, 0, 100, 100)), (1, NEU_CLASSES[4], (100, 0, 100, 100))]
    assert summary.extra["regions"] == 2
    got = []
    run_camera(bright_bundle, str(video), min_frames=3, roi=Region(100, 0, 100, 100),
               on_event=got.append)
    assert [(e["class"], e["region"]) for e in got] == [(NEU_CLASSES[4], [100, 0, 100, 100])]


def test_region_planning_and_parsing():
    assert parse_roi("1,2,30,40") == Region(1, 2, 30, 40)
    assert parse_tiles("2x3") == (2, 3) and parse_grid("50x40:25") == (50, 40, 25)
    grid = plan_regions((100, 130), grid=(50, 40, 25))
    assert {r.x for r in grid} == {0, 25, 50, 75, 80} and {r.y for r in grid} == {0, 25, 50, 60}
    assert all(r.x + r.w <= 130 and r.y + r.h <= 100 for r in grid)
    tiles = plan_regions((100, 130, 3), roi=Region(10, 0, 120, 100), tiles=(2, 3))
    assert len(tiles) == 6 and sum(r.w * r.h for r in tiles) == 120 * 100
    for bad in ("1,2,3", "a,b,c,d", "0,0,0,5"):
        with pytest.raises(InputError):
            parse_roi(bad)
    with pytest.raises(InputError, match="does not fit"):
        plan_regions((100, 100), roi=Region(50, 50, 60, 10))
    with pytest.raises(InputError, match="larger"):
        plan_regions((100, 100), grid=(120, 10, 5))
    # regions too small to show a defect: 6x4-pixel tiles of a 610x410 frame
    with pytest.raises(InputError, match=r"--tiles 100x100 makes tiles of 6x4 pixels in the "
                                         r"610x410 area: expected tiles of at least 8x8"):
        plan_regions((410, 610), tiles=(100, 100))
    with pytest.raises(InputError, match="--grid window 6x6 is too small"):
        plan_regions((100, 100), grid=(6, 6, 3))
    assert len(plan_regions((410, 610), tiles=(51, 76))) == 51 * 76  # 8x8 tiles are fine


def test_frozen_source_is_a_fault_not_a_class(workdir, bright_bundle):
    video = _levels_video(workdir / "frozen.avi", [2] * 25)
    got = []
    summary = run_camera(bright_bundle, str(video), min_frames=3, on_event=got.append,
                         faults=FaultConfig(frozen_frames=10))
    assert summary.faults["frozen"] == 1 and summary.processed == 9
    assert summary.extra["fault_frames"]["frozen"] == 16
    assert [(e.get("fault", e.get("class")), e.get("state")) for e in got] == [
        (NEU_CLASSES[2], None), ("frozen", "start"), ("frozen", "end")]   # ended with the file



def test_fault_checks_on_saturated_textured_gray_and_bgra_frames():
    rng = np.random.default_rng(0)
    textured = rng.integers(0, 200, (120, 160, 3), dtype=np.uint8)
    mostly_white = textured.copy()
    mostly_white[:, :96] = 255          # 60 % of the frame clipped, the rest textured
    partly_white = textured.copy()
    partly_white[:, :48] = 255          # 30 %: still a usable picture
    detector = FrameFaultDetector(FaultConfig(frozen_frames=0))
    for frame, expected in ((textured, None), (mostly_white, "overexposed"),
                            (partly_white, None)):
        for variant in (frame, frame[:, :, 0], frame[:, :, :1],
                        cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)):
            assert detector.check(np.ascontiguousarray(variant)) == expected
    assert detector.check(np.full((50, 60), 5, np.uint8)) == "black"
    frozen = FrameFaultDetector(FaultConfig(frozen_frames=3))
    assert [frozen.check(textured) for _ in range(4)] == [None, None, "frozen", "frozen"]
    assert frozen.check(partly_white) is None

def test_overlay_draws_boxes():
    image = np.full((60, 80), 128, np.uint8)
    canvas = draw_overlay(image, [Region(10, 10, 30, 30)], ["patches 0.9"], [True], "black")
    assert canvas.shape == (60, 80, 3)
    assert tuple(canvas[10, 20]) == (0, 0, 255)       # red box edge for an event
    assert tuple(image.shape) == (60, 80)            # input untouched


class FakeCapture:
    """A capture that delivers ``frames`` numbered frames, then fails (a dropped stream)."""

    def __init__(self, first: int, frames: int, delay: float = 0.002):
        self.next, self.end, self.delay = first, first + frames, delay

    def read(self):
        time.sleep(self.delay)
        if self.next >= self.end:
            return False, None
        image = np.full((24, 32, 3), self.next % 256, np.uint8)
        self.next += 1
        return True, image

    def get(self, prop):
        return 0.0

    def release(self):
        pass


def test_live_source_reconnects_with_backoff(bright_bundle):
    sessions = iter([FakeCapture(0, 20), SourceError("down"), SourceError("down"),
                     FakeCapture(100, 20), FakeCapture(200, 10**9)])
    attempts = []

    def opener():
        attempts.append(time.monotonic())
        item = next(sessions)
        if isinstance(item, Exception):
            raise item
        return item

    src = LatestFrameSource(opener, "fake rtsp", Backoff(initial=0.01, maximum=0.02))
    seen = []
    stop = _stop_after(src, seen, lambda: len(attempts) >= 5 and max(seen, default=0) >= 200)
    summary = run_camera(bright_bundle, src, min_frames=1000, stop=stop,
                         faults=FaultConfig(frozen_frames=0))
    assert summary.stop_reason == "test done"
    assert src.stats.disconnects == 2 and src.stats.reconnects == 2
    assert len(attempts) == 5
    assert summary.reconnects == 2
    # frames from before the drop and from both sessions after it reached the model
    assert min(seen) < 20 and any(100 <= v < 120 for v in seen) and max(seen) >= 200
    assert summary.read == (summary.processed + summary.dropped
                            + sum(summary.extra.get("fault_frames", {}).values()))


def _stop_after(src, seen, condition):
    """Wrap ``src.read`` to record frame levels and stop the run once ``condition()``."""
    from edgecnn.deploy.runstats import StopFlag

    flag = StopFlag()
    original = src.read

    def read(timeout=0.5):
        frame = original(timeout)
        if frame is not None:
            seen.append(int(frame.image[0, 0, 0]))
        if condition():
            flag.set("test done")
        return frame

    src.read = read
    return flag


def test_live_source_keeps_only_the_latest_frame():
    prepared = []

    def prepare(image, previous, waiting):   # runs on every frame, dropped ones too
        prepared.append(int(image[0, 0, 0]))
        return int(image[0, 0, 0])

    src = LatestFrameSource(lambda: FakeCapture(0, 10**9, delay=0.001), "fast camera",
                            Backoff(0.01, 0.01), prepare=prepare)
    taken = []
    try:
        while len(taken) < 8:
            frame = src.read(1.0)
            if frame is not None:
                taken.append(frame.index)
                assert frame.work == frame.index % 256 == frame.image[0, 0, 0]
                time.sleep(0.03)   # inference slower than the camera
    finally:
        src.close()
    assert taken == sorted(set(taken))
    assert src.stats.dropped > 0
    assert max(np.diff(taken)) > 1      # stale frames were skipped, not queued
    assert src.stats.read >= len(taken) + src.stats.dropped
    assert len(prepared) == src.stats.read


class TwoSizeCapture(FakeCapture):
    """A camera whose resolution changes after 20 frames (e.g. reconfigured)."""

    def __init__(self, first: int, frames: int):
        super().__init__(first, frames)
        self.first = first

    def read(self):
        ok, image = super().read()
        if ok and self.next - self.first > 20:
            image = np.full((48, 32, 3), image[0, 0, 0], np.uint8)
        return ok, image


def test_frame_size_change_replans_regions(bright_bundle):
    src = LatestFrameSource(lambda: TwoSizeCapture(100, 40), "two sizes", is_file=True)
    got = []
    summary = run_camera(bright_bundle, src, grid=(16, 16, 16), min_frames=1,
                         threshold=0.0, on_event=got.append,
                         faults=FaultConfig(frozen_frames=0))
    assert summary.stop_reason == "end of source"
    assert summary.extra["regions"] == 6            # 24x32 frames: 4, 48x32 frames: 6
    regions = {tuple(e["region"]) for e in got if e["type"] == "defect"}
    assert (0, 8, 16, 16) in regions and (0, 32, 16, 16) in regions
    assert summary.read == summary.processed + summary.dropped == 40


def test_realtime_video_behaves_like_a_live_source(workdir):
    video = _levels_video(workdir / "paced.avi", [1, 2, 3, 4] * 5, fps=200.0)
    src = open_frame_source(str(video), realtime=True, backoff=Backoff(0.01, 0.01))
    assert src.live and src.fps == pytest.approx(200.0)
    count = 0
    deadline = time.monotonic() + 10
    while not src.exhausted and time.monotonic() < deadline:
        if src.read(0.5) is not None:
            count += 1
    src.close()
    assert src.exhausted and src.stats.read == 20
    assert count + src.stats.dropped == 20


def test_corrupt_frames_are_skipped_and_counted(workdir, bright_bundle):
    """Damage the JPEG data of some frames in an MJPG file: they are skipped, not fatal."""
    video = _levels_video(workdir / "corrupt.avi", [1, 2, 3, 4] * 10)
    data = bytearray(video.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(starts) >= 40
    for k in (10, 11, 12, 25):   # wreck four frames' JPEG data, keep the AVI chunks
        data[starts[k]:starts[k + 1] - 8] = bytes(starts[k + 1] - 8 - starts[k])
    bad = workdir / "corrupt frames.avi"
    bad.write_bytes(bytes(data))
    summary = run_camera(bright_bundle, str(bad), min_frames=1000,
                         faults=FaultConfig(frozen_frames=0))
    assert summary.corrupt == 4
    assert summary.read == summary.processed == 36
    assert summary.stop_reason == "end of source"


def test_unopenable_sources(workdir, bright_bundle):
    not_video = workdir / "notes.avi"
    not_video.write_text("this is not a video")
    for source in (str(workdir / "missing.avi"), str(not_video), "99"):
        with pytest.raises(SourceError):   # device 99 is live: waited for 0.5 s, not 60
            run_camera(bright_bundle, source, backoff=Backoff(0.1, 0.2, connect_timeout=0.5))


def test_duration_and_max_frames_stop_a_live_run(bright_bundle):
    src = LatestFrameSource(lambda: FakeCapture(100, 10**9), "endless", Backoff(0.01, 0.01))
    summary = run_camera(bright_bundle, src, duration=0.3, faults=FaultConfig(frozen_frames=0))
    assert summary.stop_reason == "duration reached" and summary.processed > 0
    src = LatestFrameSource(lambda: FakeCapture(100, 10**9), "endless", Backoff(0.01, 0.01))
    summary = run_camera(bright_bundle, src, max_frames=7, faults=FaultConfig(frozen_frames=0))
    assert summary.stop_reason == "max frames reached" and summary.processed == 7


def test_sample_video_from_calibration_images(tmp_path, conv_bundle):
    from edgecnn.deploy.samplevideo import make_sample_video
    from runtime_helpers import CALIBRATION

    video = make_sample_video(tmp_path / "demo" / "line.avi", CALIBRATION / "neu",
                              per_class=2, hold=3)
    summary = run_camera(conv_bundle, str(video), min_frames=3, threshold=0.0)
    assert summary.read == summary.processed == 2 * 6 * 3
    assert sum(summary.events.values()) >= 1
    with pytest.raises(InputError, match="class folders"):
        make_sample_video(tmp_path / "x.avi", tmp_path / "empty")


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/", "rtsp://127.0.0.1:0/cam",
                                 "tcp://127.0.0.1:65536", "http://127.0.0.1:80a/"])
def test_a_port_out_of_range_fails_at_once_not_after_the_connect_timeout(url, bright_bundle):
    from edgecnn.deploy.samples import TcpSampleSource

    started = time.monotonic()
    with pytest.raises(InputError, match="port should be a number from 1 to 65535"):
        if url.startswith("tcp://"):
            TcpSampleSource(url, 12000.0, backoff=Backoff(0.1, 0.2, connect_timeout=30))
        else:
            run_camera(bright_bundle, url, backoff=Backoff(0.1, 0.2, connect_timeout=30))
    assert time.monotonic() - started < 10


def test_a_paced_video_reports_the_pipeline_latency_not_the_wait(workdir, bright_bundle):
    """--realtime holds a decoded frame until it is due; its latency counts from then,
    as a camera's frame from its arrival (at 10 frames/s it read ~100 ms: the wait)."""
    video = _levels_video(workdir / "slow.avi", [1, 2, 3, 4] * 2, fps=10.0)
    summary = run_camera(bright_bundle, str(video), realtime=True, min_frames=1)
    assert summary.processed >= 6
    assert summary.latency_p50_ms < 50, summary.latency_p50_ms


def test_opencv_log_level_is_restored_after_threads_quieten_it_at_once(tmp_path, monkeypatch):
    # the level is process-wide: a camera opening while a loader decodes must not leave
    # OpenCV's warnings hidden for the rest of the process
    import sys

    from edgecnn.deploy.preprocess import decode_image, quiet_opencv

    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    log = cv2.utils.logging
    before = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_INFO)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    path = tmp_path / "p.png"
    cv2.imwrite(str(path), np.zeros((16, 16), np.uint8))
    try:
        def opens():
            for _ in range(5000):
                with quiet_opencv("ERROR"):
                    pass

        def decodes():
            for _ in range(2000):
                decode_image(path, "gray")

        threads = [threading.Thread(target=opens), threading.Thread(target=decodes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.getLogLevel() == log.LOG_LEVEL_INFO
    finally:
        sys.setswitchinterval(interval)
        log.setLogLevel(before)
