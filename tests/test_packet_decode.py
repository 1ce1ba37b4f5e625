"""MJPEG read as compressed packets and decoded by ``cv2.imdecode`` straight to the
model's colour: generated MJPG videos (clean, with a damaged frame), other codecs that
keep the capture's own decoding, and an HTTP MJPEG stream served by ffmpeg."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecnn.deploy.camera import run_camera
from edgecnn.deploy.captures import PacketCapture, jpeg_is_whole, open_file
from edgecnn.deploy.faults import FaultConfig
from edgecnn.deploy.frames import VideoFileSource, open_frame_source
from edgecnn.deploy.reconnect import Backoff
from runtime_helpers import make_image_bundle, neu_images, write_video
from test_runtime_streams import MjpegServer, _stop_when, needs_ffmpeg


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("packet decode")   # a space in the path


@pytest.fixture(scope="module")
def images():
    return [image for _, image in neu_images(2)]      # 12 gray 200 x 200 NEU images


@pytest.fixture(scope="module")
def video(workdir, images):
    return write_video(workdir / "neu mjpg.avi", images)


@pytest.fixture(scope="module")
def gray_bundle(workdir):
    return make_image_bundle(workdir / "bright bundle", size=32)


def _packets(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.set(cv2.CAP_PROP_FORMAT, -1)
    packets = []
    while True:
        ok, packet = cap.read()
        if not ok:
            break
        packets.append(packet.copy())
    cap.release()
    return packets


def _frames(src) -> list[tuple[int, np.ndarray]]:
    seen = []
    with src:
        while (frame := src.read(5.0)) is not None or not src.exhausted:
            if frame is not None:
                seen.append((frame.index, frame.image.copy()))
    return seen


def test_mjpg_file_decodes_packets_to_gray_like_training(video, images):
    packets = _packets(video)
    assert len(packets) == len(images)
    new = _frames(VideoFileSource(video, color="gray"))
    old = _frames(VideoFileSource(video))                 # the capture's BGR decoding
    assert [i for i, _ in new] == [i for i, _ in old] == list(range(len(images)))
    for (_, gray), (_, bgr), packet in zip(new, old, packets):
        assert gray.shape == bgr.shape[:2] and gray.dtype == np.uint8
        # exactly what training's read_image does with a JPEG file
        np.testing.assert_array_equal(gray, cv2.imdecode(packet, cv2.IMREAD_GRAYSCALE))
        diff = np.abs(gray.astype(int) - cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        assert diff.max() <= 3 and diff.mean() <= 1.5
    with VideoFileSource(video, color="gray") as src:
        assert src.decoding == "packets"
    with VideoFileSource(video) as src:
        assert src.decoding == "capture"


def test_colour_model_gets_bgr_from_packets(video, images):
    packets = _packets(video)
    new = _frames(VideoFileSource(video, color="rgb"))
    assert len(new) == len(images)
    for (_, image), packet in zip(new, packets):
        assert image.shape == (*images[0].shape, 3)
        np.testing.assert_array_equal(image, cv2.imdecode(packet, cv2.IMREAD_COLOR))


def _damage(path, out, frames):
    """Zero the first half of the JPEG data of ``frames`` (the AVI chunks stay intact)."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    for k in frames:
        end = starts[k] + (starts[k + 1] - starts[k]) // 2
        data[starts[k]:end] = bytes(end - starts[k])
    out.write_bytes(bytes(data))
    return out


def test_a_packet_that_does_not_decode_is_corrupt_and_the_run_goes_on(workdir, video,
                                                                      images, gray_bundle):
    bad = _damage(video, workdir / "damaged.avi", [5])
    packets = _packets(bad)
    assert len(packets) == len(images)
    assert cv2.imdecode(packets[5], cv2.IMREAD_GRAYSCALE) is None
    with VideoFileSource(bad, color="gray") as src:
        seen = _frames(src)
    assert src.decoding == "packets" and src.stats.corrupt == 1
    assert len(seen) == src.stats.read == len(images) - 1
    expected = [cv2.imdecode(p, cv2.IMREAD_GRAYSCALE) for k, p in enumerate(packets)
                if k != 5]
    for (_, got), want in zip(seen, expected):   # in order, the damaged one left out
        np.testing.assert_array_equal(got, want)
    summary = run_camera(gray_bundle, str(bad), min_frames=1000,
                         faults=FaultConfig(frozen_frames=0))
    assert summary.extra["decoding"] == "packets"
    assert summary.corrupt == 1 and summary.read == summary.processed == len(images) - 1
    assert summary.stop_reason == "end of source"


def _chunk_damage(path, out, damage):
    """``damage(data, starts, k)`` on the AVI's frame chunks ('00dc' headers at
    ``starts``): the file as a damaged disk or transfer leaves it."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 4) if data[i:i + 4] == b"00dc"]
    damage(data, starts)
    out.write_bytes(bytes(data))
    return out


def test_frames_the_demuxer_skips_are_counted_as_corrupt(workdir, video, images, gray_bundle,
                                                         caplog):
    """A damaged AVI chunk header never reaches ``read``: FFmpeg's demuxer skips the frame
    without a word. The frames the file's index lists that never arrived are counted as
    corrupt at its end, with a warning; whatever the reading path (packets, the capture's
    own decoding, paced, several sources), read + corrupt is every frame of the file."""
    import logging

    from edgecnn.deploy.multi import run_many
    from edgecnn.deploy.options import plan_from_keywords

    def header(data, starts):
        data[starts[4]:starts[4] + 4] = b"zzzz"

    def zeroed(data, starts):        # two whole chunks, headers and JPEGs
        data[starts[6]:starts[8]] = bytes(starts[8] - starts[6])

    n = len(images)
    cases = [(_chunk_damage(video, workdir / "bad header.avi", header), 1),
             (_chunk_damage(video, workdir / "zeroed chunks.avi", zeroed), 2),
             (video, 0)]
    faults = FaultConfig(frozen_frames=0)
    for path, lost in cases:
        for color in ("gray", None):                 # packets, the capture's decoding
            with VideoFileSource(path, color=color) as src:
                seen = _frames(src)
            assert len(seen) == src.stats.read == n - lost, (path, color)
            assert src.stats.corrupt == lost, (path, color)
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            for realtime in (False, True):
                summary = run_camera(gray_bundle, str(path), min_frames=1000, faults=faults,
                                     realtime=realtime)
                assert (summary.read, summary.corrupt) == (n - lost, lost), (path, realtime)
        said = f"{lost} of the {n} frames its index lists never arrived"
        assert (said in caplog.text) is (lost > 0), caplog.text
    plans = [(gray_bundle, plan_from_keywords("camera", str(path), name=f"cam{i}",
                                              min_frames=1000, faults=faults))
             for i, (path, _) in enumerate(cases)]
    summaries = run_many(plans)
    assert [(s.read, s.corrupt) for s in summaries] == [(n - lost, lost) for _, lost in cases]

    ffv1 = workdir / "neu ffv1.mkv"                  # no index: nothing is inferred
    writer = cv2.VideoWriter(str(ffv1), cv2.VideoWriter_fourcc(*"FFV1"), 25.0, (200, 200),
                             isColor=False)
    for image in images:
        writer.write(image)
    writer.release()
    with VideoFileSource(ffv1, color="gray") as src:
        assert len(_frames(src)) == n and src.stats.corrupt == 0



def test_a_second_of_cut_frames_in_a_recording_does_not_end_it(workdir, images):
    """30 frames in a row whose JPEGs lost their end (a cut transfer): each is counted as
    corrupt and the frames after them are still read, whichever way the file is decoded."""
    frames = [images[i % len(images)] for i in range(60)]
    path = write_video(workdir / "long cut.avi", frames)

    def cut(data, starts):
        for start in starts[10:40]:
            size = int.from_bytes(data[start + 4:start + 8], "little")
            end = start + 8 + size
            data[end - 200:end] = bytes(200)

    damaged = _chunk_damage(path, workdir / "long cut damaged.avi", cut)
    with VideoFileSource(damaged, color="gray") as src:
        seen = _frames(src)
        assert src.decoding == "packets"
    assert len(seen) == src.stats.read == 30 and src.stats.corrupt == 30


class _Packets:
    """A raw-mode capture of a camera that sends ``packets`` (JPEGs), then ends."""

    def __init__(self, packets):
        self.packets = list(packets)

    def read(self, buffer=None):
        return (True, self.packets.pop(0)) if self.packets else (False, None)


def test_a_frame_cut_short_is_corrupt_not_classified_in_part(images):
    """A JPEG whose end was lost (zeros in its place, as a camera's fixed-size buffer
    or a lost network packet leaves it) decodes in part -- libjpeg fills the rest gray --
    so it is counted as corrupt instead of classified."""
    whole = [cv2.imencode(".jpg", image)[1].reshape(-1) for image in images[:3]]
    cut = whole[1].copy()
    cut[len(cut) // 2:] = 0
    part = cv2.imdecode(cut, cv2.IMREAD_GRAYSCALE)
    assert part is not None and part.shape == images[1].shape   # what used to be classified
    assert np.abs(part.astype(int) - images[1]).mean() > 5
    capture = PacketCapture(_Packets([whole[0], cut, whole[2]]), cv2.IMREAD_GRAYSCALE)
    got = [capture.read() for _ in range(4)]
    assert [ok for ok, _ in got] == [True, True, True, False]
    assert got[1][1] is None                                      # corrupt, not an image
    np.testing.assert_array_equal(got[2][1], cv2.imdecode(whole[2], cv2.IMREAD_GRAYSCALE))
    # zeros after the end marker (padding to an even or a fixed size) are no cut
    for pad in (1, 1023, 1024, 5000):
        assert jpeg_is_whole(np.concatenate([whole[0], np.zeros(pad, np.uint8)]))
    assert not jpeg_is_whole(whole[0][:-2]) and not jpeg_is_whole(np.zeros(3000, np.uint8))
    assert not jpeg_is_whole(np.array([0xD9], np.uint8))


def test_mjpg_whose_first_packet_does_not_decode_keeps_the_capture_path(workdir, video):
    bad = _damage(video, workdir / "damaged first.avi", [0])
    capture = open_file(str(bad), "gray")
    assert not isinstance(capture, PacketCapture)
    capture.release()


@pytest.mark.parametrize("fourcc", ["FFV1", "HFYU"])
def test_other_codecs_keep_the_capture_path(workdir, images, fourcc):
    path = workdir / f"lossless {fourcc}.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0,
                             images[0].shape[::-1])
    if not writer.isOpened():
        pytest.skip(f"this OpenCV cannot write {fourcc}")
    for image in images[:4]:
        writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    writer.release()
    with VideoFileSource(path, color="gray") as src:
        assert src.decoding == "capture"
    seen = _frames(VideoFileSource(path, color="gray"))
    assert len(seen) == 4
    for (_, frame), image in zip(seen, images):   # lossless, BGR as the capture decodes
        assert frame.shape == (*image.shape, 3)
        np.testing.assert_array_equal(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), image)


def test_raw_gray_video_stays_native_gray(workdir, images):
    path = workdir / "mono.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"Y800"), 25.0,
                             images[0].shape[::-1], isColor=False)
    for image in images[:3]:
        writer.write(image)
    writer.release()
    with VideoFileSource(path, color="gray") as src:
        assert src.decoding == "capture"
        np.testing.assert_array_equal(src.read(5.0).image, images[0])


def test_realtime_mjpg_file_is_paced_from_packets(workdir, images):
    video = write_video(workdir / "paced.avi", images, fps=200.0)
    src = open_frame_source(str(video), realtime=True, backoff=Backoff(0.01, 0.01),
                            color="gray")
    count = 0
    while not src.exhausted:
        frame = src.read(0.5)
        if frame is not None:
            assert frame.image.ndim == 2
            count += 1
    src.close()
    assert src.decoding == "packets" and src.stats.read == len(images)
    assert count + src.stats.dropped == len(images) and src.stats.corrupt == 0


@needs_ffmpeg
def test_http_mjpeg_stream_is_decoded_from_packets(gray_bundle):
    server = MjpegServer()
    server.start()
    try:
        src = open_frame_source(server.url, backoff=Backoff(0.1, 0.5, connect_timeout=20),
                                color="gray")
        assert src.decoding == "packets"
        frame = src.read(5.0)
        assert frame is not None and frame.image.shape == (120, 160)
        summary = run_camera(gray_bundle, src, duration=30, min_frames=1, threshold=0.0,
                             stop=_stop_when(lambda: src.stats.read >= 15),
                             faults=FaultConfig(frozen_frames=0))
    finally:
        server.kill()
    assert summary.extra["decoding"] == "packets"
    assert summary.processed >= 10 and summary.corrupt == 0
    assert summary.stop_reason == "test done"


def test_gray_packet_frames_get_the_read_ahead_ring_of_bgr_frames(video):
    """The ring budget counts a frame's pixels as BGR: gray frames from packets (whose
    float tensors weigh more than the frame) get no longer ring than the capture's BGR."""
    budget = 2 * 3 * 200 * 200 * 4          # four slots of a 200 x 200 frame
    with VideoFileSource(video, prefetch=6, ring_bytes=budget) as bgr:
        assert bgr.decoding == "capture" and bgr.slots == 4
    with VideoFileSource(video, prefetch=6, ring_bytes=budget, color="gray") as gray:
        assert gray.decoding == "packets" and gray.slots == 4


def test_snapshots_of_a_gray_model_are_the_gray_frames_it_classified(workdir, video,
                                                                     images, gray_bundle):
    folder = workdir / "snapshots"
    summary = run_camera(gray_bundle, str(video), min_frames=1, threshold=0.0,
                         snapshots=str(folder), faults=FaultConfig(frozen_frames=0))
    assert summary.extra["decoding"] == "packets" and summary.processed == len(images)
    shots = sorted(folder.glob("*.jpg"))
    assert shots
    saved = cv2.imdecode(np.fromfile(str(shots[0]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert saved.shape == images[0].shape          # one channel, as the model saw it


class NotJpegStream:
    """An FFmpeg capture of 'MJPG' whose packets are no JPEG imdecode can decode."""

    released = False

    def getBackendName(self):
        return "FFMPEG"

    def get(self, prop):
        return cv2.VideoWriter_fourcc(*"MJPG") if prop == cv2.CAP_PROP_FOURCC else 0.0

    def set(self, prop, value):
        return prop == cv2.CAP_PROP_FORMAT and value == -1

    def read(self, buffer=None):
        return True, np.zeros((1, 500), np.uint8)

    def release(self):
        self.released = True


def test_a_stream_whose_first_jpeg_does_not_decode_is_reopened_for_the_capture():
    from edgecnn.deploy.captures import _raw_mjpeg

    spoiled, again = NotJpegStream(), object()
    assert _raw_mjpeg(spoiled, "gray", lambda: again) is again
    assert spoiled.released                      # raw mode cannot be undone: closed
    kept = NotJpegStream()
    assert _raw_mjpeg(kept, None, lambda: again) is kept   # no colour asked: as before
