"""Live sources against real servers: an HTTP MJPEG stream served by ffmpeg (killed,
restarted, paused, started late, never up) and a TCP float32 sensor written in Python
(slips a byte, goes silent with the socket open, disconnects)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from edgecnn.deploy.camera import run_camera
from edgecnn.deploy.errors import SourceError
from edgecnn.deploy.faults import FaultConfig
from edgecnn.deploy.frames import open_frame_source
from edgecnn.deploy.reconnect import Backoff
from edgecnn.deploy.runstats import StopFlag
from edgecnn.deploy.samples import TcpSampleSource
from edgecnn.deploy.vibration import run_vibration
from runtime_helpers import make_image_bundle, make_signal_bundle

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed: the HTTP "
                                  "MJPEG stream tests need it (apt-get install ffmpeg)")
RATE = 12000.0   # the signal bundle's sample rate
WINDOW = 2048


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


class MjpegServer:
    """ffmpeg serving a 25 fps test pattern as HTTP multipart JPEG on 127.0.0.1 (one
    client per process: ``start`` again after ``kill`` to come back on the same port)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/feed.mjpg"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start ffmpeg; one that ends at once (it could not listen on the port) is started
        again, and after three tries its own error fails the test rather than a 20 s wait
        for a server that is not there."""
        import tempfile

        for _ in range(3):
            with tempfile.TemporaryFile() as err:   # a file: a pipe nobody reads can fill
                self.proc = subprocess.Popen(
                    [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
                     "-i", "testsrc=size=160x120:rate=25", "-f", "mpjpeg", "-listen", "1",
                     self.url], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=err)
                try:
                    self.proc.wait(0.3)
                except subprocess.TimeoutExpired:
                    return                   # listening (it waits for its client)
                err.seek(0)
                said = err.read().decode(errors="replace").strip()[-300:]
            time.sleep(0.2)
        raise RuntimeError(f"ffmpeg's MJPEG server on port {self.port} ended at once: {said}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def server():
    server = MjpegServer()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory):
    return make_image_bundle(tmp_path_factory.mktemp("streams") / "bright", size=32)


@pytest.fixture(scope="module")
def signal_bundle(tmp_path_factory):
    return make_signal_bundle(tmp_path_factory.mktemp("streams") / "signal", WINDOW)


def _faults(events, fault):
    return [e for e in events if e.get("type") == "fault" and e["fault"] == fault]


def _run_in_thread(target, **kwargs):
    result = {}

    def main():
        try:
            result["summary"] = target(**kwargs)
        except BaseException as exc:   # handed to the test
            result["error"] = exc

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    return thread, result


@needs_ffmpeg
def test_http_stream_killed_then_restarted_is_a_disconnect_with_start_and_end(
        server, image_bundle):
    server.start()
    src = open_frame_source(server.url, backoff=Backoff(0.1, 0.5, connect_timeout=20))
    events, stop = [], StopFlag()
    thread, result = _run_in_thread(run_camera, bundle=image_bundle, source=src, stop=stop,
                                    on_event=events.append, duration=60,
                                    faults=FaultConfig(frozen_frames=0))
    try:
        assert wait_for(lambda: src.stats.read >= 10)
        server.kill()
        assert wait_for(lambda: _faults(events, "disconnected"))
        time.sleep(0.5)                       # reconnects are refused meanwhile
        server.start()
        assert wait_for(lambda: len(_faults(events, "disconnected")) >= 2)
        before = src.stats.read
        assert wait_for(lambda: src.stats.read >= before + 10)
    finally:
        stop.set("test done")
        thread.join(30)
    summary = result["summary"]
    start, end = _faults(events, "disconnected")
    assert start["state"] == "start" and end["state"] == "end"
    assert end["since"] == start["time"] and end["duration_s"] >= 0.5
    assert summary.reconnects == 1 and src.stats.disconnects == 1
    assert summary.extra["source_faults"] == {"disconnected": 1}
    assert summary.processed >= 20 and summary.stop_reason == "test done"
    assert len(start["id"]) > 8 and start["id"] != end["id"]  # as every event, an id
    assert "disconnected 1" in summary.format().split("faults")[1].splitlines()[0]


@needs_ffmpeg
def test_http_stream_that_pauses_is_stalled_then_recovers(server, image_bundle):
    server.start()
    src = open_frame_source(server.url,
                            backoff=Backoff(0.1, 0.5, connect_timeout=20, stall_seconds=0.5))
    events, stop = [], StopFlag()
    thread, result = _run_in_thread(run_camera, bundle=image_bundle, source=src, stop=stop,
                                    on_event=events.append, duration=60,
                                    faults=FaultConfig(frozen_frames=0))
    try:
        assert wait_for(lambda: src.stats.read >= 10)
        server.pause()                        # connected, nothing sent
        assert wait_for(lambda: _faults(events, "stalled"))
        time.sleep(0.5)
        server.resume()
        assert wait_for(lambda: len(_faults(events, "stalled")) >= 2)
    finally:
        stop.set("test done")
        thread.join(30)
    summary = result["summary"]
    start, end = _faults(events, "stalled")[:2]
    assert (start["state"], end["state"]) == ("start", "end")
    assert end["duration_s"] >= 0.4 and "no frame" in start["detail"]
    assert not _faults(events, "disconnected") and summary.reconnects == 0
    assert summary.extra["source_faults"]["stalled"] >= 1


@needs_ffmpeg
def test_stream_that_starts_late_is_waited_for(server, image_bundle, capfd):
    starter = threading.Timer(1.5, server.start)
    starter.start()
    try:
        summary = run_camera(image_bundle, server.url, max_frames=15,
                             backoff=Backoff(0.2, 0.5, connect_timeout=30),
                             faults=FaultConfig(frozen_frames=0))
    finally:
        starter.cancel()
    assert summary.stop_reason == "max frames reached" and summary.processed == 15
    err = capfd.readouterr().err
    assert "waiting for the source" in err and "connection refused" in err
    assert "can't be used to capture by name" not in err and "[tcp @" not in err


@needs_ffmpeg
def test_stream_that_never_comes_up_fails_cleanly_after_the_timeout(image_bundle):
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-c", "from edgecnn.cli import main; main()", "run", "camera",
         str(image_bundle), "--source", f"http://127.0.0.1:{port}/feed.mjpg",
         "--connect-timeout", "1.5"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot open stream") and "connection refused" in last
    assert "attempts over" in last and "--connect-timeout 1.5 s" in last
    assert "waited 10000 ms" not in proc.stderr and "Traceback" not in proc.stderr
    assert "capture by name" not in proc.stderr and "[tcp @" not in proc.stderr


def test_missing_file_fails_at_once(image_bundle, tmp_path, capfd):
    for realtime in (False, True):           # a file is opened once, never waited for
        with pytest.raises(SourceError, match="not a file") as error:
            run_camera(image_bundle, str(tmp_path / "missing.avi"), realtime=realtime)
        assert "attempt" not in str(error.value)
    assert "waiting for the source" not in capfd.readouterr().err


# ------------------------------------------------------------------------- TCP sensor

def sensor_signal(seconds: float, seed: int = 0) -> np.ndarray:
    """A plausible vibration: two tones and noise, about 1 g."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    return (0.8 * np.sin(2 * np.pi * 157 * t) + 0.3 * np.sin(2 * np.pi * 1230 * t)
            + 0.1 * rng.normal(size=len(t))).astype("<f4")


class TcpSensor:
    """A sensor on 127.0.0.1 that plays a script per connection: a list of steps,
    ``bytes`` (send them), a float (stay silent that long), "close" (cut the connection;
    the next script goes to the next client) and "hold" (keep the socket open)."""

    def __init__(self, *scripts, port: int | None = None, late: float = 0.0):
        self.port = port or free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.scripts = list(scripts)
        self.late = late             # seconds before the sensor starts listening
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        if not late:
            wait_for(lambda: hasattr(self, "sock"), 10)

    def _serve(self):
        time.sleep(self.late)
        self.sock = socket.create_server(("127.0.0.1", self.port))
        held = []
        for script in self.scripts:
            conn, _ = self.sock.accept()
            for step in script:
                if isinstance(step, bytes):
                    conn.sendall(step)
                elif isinstance(step, float):
                    time.sleep(step)
                elif step == "close":
                    conn.close()
                    break
                else:
                    held.append(conn)
        self.done.wait(60)
        for conn in held:
            conn.close()
        self.sock.close()


def test_tcp_byte_slip_is_realigned_within_two_seconds(signal_bundle):
    x = sensor_signal(6.0)
    cut = int(2.0 * RATE) * 4 + 1              # one byte lost in the middle of sample 24000
    data = x.tobytes()
    sensor = TcpSensor([data[:cut], data[cut + 1:], "hold"])
    events = []
    try:
        src = TcpSampleSource(sensor.url, RATE, backoff=Backoff(0.05, 0.1))
        summary = run_vibration(signal_bundle, src, hop=1024, on_event=events.append,
                                duration=30, max_windows=10 ** 6,
                                stop=_stop_when(lambda: src.stats.samples >= len(x) - 64))
    finally:
        sensor.done.set()
    realigned = _faults(events, "realigned")
    assert len(realigned) == 1 and "skipped 3 byte" in realigned[0]["detail"]
    assert summary.extra["source_faults"]["realigned"] == 1
    assert src.stats.realigned == 1 and src.stats.slipped_bytes == 3
    # no window of garbage: every window is finite and classified
    assert summary.faults["nonfinite"] == 0 and summary.processed == summary.read
    # what the slip cost: a few samples, and one window's worth before windows resume
    lost = len(x) - src.stats.samples
    assert 0 < lost < 16
    gap = _faults(events, "gap")
    assert len(gap) == 1 and abs(gap[0]["start_s"] - 2.0) < 0.01
    before = len(range(0, int(2.0 * RATE) - WINDOW + 1 - 8, 1024))
    after = len(range(0, len(x) - int(2.0 * RATE) - WINDOW + 1 - 8, 1024))
    assert summary.read >= before + after - 2


def _stop_when(condition):
    """A StopFlag a watcher thread sets once ``condition()`` holds (or after 30 s)."""
    flag = StopFlag()

    def watch():
        wait_for(condition, 30)
        time.sleep(0.3)
        flag.set("test done")

    threading.Thread(target=watch, daemon=True).start()
    return flag


def test_silent_tcp_sensor_is_stalled_and_no_window_spans_the_silence(signal_bundle):
    x = sensor_signal(2.0)
    half = len(x) // 2
    sensor = TcpSensor([x[:half].tobytes(), 1.5, x[half:].tobytes(), "hold"])
    events = []
    try:
        src = TcpSampleSource(sensor.url, RATE, backoff=Backoff(0.05, 0.1,
                                                               stall_seconds=0.5))
        summary = run_vibration(signal_bundle, src, hop=1024, on_event=events.append,
                                duration=30,
                                stop=_stop_when(lambda: src.stats.samples >= len(x)))
    finally:
        sensor.done.set()
    start, end = _faults(events, "stalled")
    assert (start["state"], end["state"]) == ("start", "end") and end["duration_s"] >= 0.5
    assert summary.extra["source_faults"] == {"stalled": 1}
    gap = _faults(events, "gap")
    assert len(gap) == 1 and gap[0]["start_s"] == pytest.approx(half / RATE, abs=1e-3)
    # windows restart after the silence: none holds samples from both sides
    expected = len(range(0, half - WINDOW + 1, 1024)) * 2
    assert summary.read == expected and summary.processed == expected


def test_tcp_sensor_disconnect_is_a_fault_with_start_and_end(signal_bundle):
    x = sensor_signal(1.0)
    sensor = TcpSensor([x.tobytes(), "close"], [x.tobytes(), "hold"])
    events = []
    try:
        src = TcpSampleSource(sensor.url, RATE, backoff=Backoff(0.2, 0.4))
        summary = run_vibration(signal_bundle, src, hop=1024, on_event=events.append,
                                duration=30,
                                stop=_stop_when(lambda: src.stats.samples >= 2 * len(x)))
    finally:
        sensor.done.set()
    start, end = _faults(events, "disconnected")
    assert (start["state"], end["state"]) == ("start", "end")
    assert end["since"] == start["time"] and end["duration_s"] >= 0.15
    assert summary.reconnects == 1 and summary.faults["gap"] == 1
    assert summary.extra["source_faults"] == {"disconnected": 1}


def test_tcp_sensor_that_is_not_up_yet_is_waited_for(signal_bundle):
    x = sensor_signal(1.0)
    sensor = TcpSensor([x.tobytes(), "hold"], late=1.0)
    try:
        summary = run_vibration(signal_bundle, sensor.url, hop=1024,
                                backoff=Backoff(0.2, 0.5, connect_timeout=20),
                                max_windows=len(range(0, len(x) - WINDOW + 1, 1024)))
    finally:
        sensor.done.set()
    assert summary.stop_reason == "max windows reached" and summary.processed > 0
    with pytest.raises(SourceError, match=r"connection refused \(\d+ attempts over"):
        run_vibration(signal_bundle, f"tcp://127.0.0.1:{free_port()}",
                      backoff=Backoff(0.1, 0.2, connect_timeout=0.5))


def test_a_few_nan_samples_are_not_a_slip():
    from edgecnn.deploy.samples import _RawFloatStream

    x = sensor_signal(0.5)
    x[1000:1003] = np.nan                      # the sensor's own bad readings
    stream = _RawFloatStream(RATE, None)
    stream._decode(x.tobytes())
    out = np.concatenate([raw for raw, _ in stream._ready])
    assert len(out) == len(x) and stream.stats.realigned == 0
    assert np.isnan(out[1000:1003]).all() and not np.isnan(np.delete(out, [1000, 1001,
                                                                          1002])).any()


class RepeatingCapture:
    """A live capture that, like a broken stream, hands out frames without a new stream
    time (the decoder's leftovers) between real ones: every third frame is new."""

    def __init__(self, frames: int):
        self.n = 0
        self.frames = frames
        self.position = 0.0

    def read(self):
        if self.n >= self.frames:
            return False, None
        self.n += 1
        if self.n % 3 == 1:
            self.position += 40.0
        return True, np.full((24, 32, 3), 60 + self.n % 3 * 40, np.uint8)

    def get(self, prop):
        import cv2

        return self.position if prop == cv2.CAP_PROP_POS_MSEC else 0.0

    def release(self):
        pass


def test_frames_without_a_new_stream_time_count_as_corrupt(image_bundle):
    from edgecnn.deploy.frames import LatestFrameSource

    sessions = iter([RepeatingCapture(300)])

    def opener():
        capture = next(sessions, None)
        if capture is None:
            raise SourceError("down")
        return capture

    src = LatestFrameSource(opener, "broken stream", Backoff(0.05, 0.1))
    seen = []
    original = src.read

    def read(timeout=0.5):
        frame = original(timeout)
        if frame is not None:
            seen.append(int(frame.image[0, 0, 0]))
        return frame

    src.read = read
    summary = run_camera(image_bundle, src, faults=FaultConfig(frozen_frames=0),
                         stop=_stop_when(lambda: src.stats.disconnects == 1))
    assert src.stats.read == 100 and summary.corrupt == 200
    assert seen and set(seen) == {100}      # only the frames with a new stream time


def test_tiny_frames_are_a_fault_not_a_class(image_bundle):
    from edgecnn.deploy.faults import FrameFaultDetector
    from edgecnn.deploy.frames import LatestFrameSource

    detector = FrameFaultDetector()
    assert detector.check(np.full((2, 2, 3), 128, np.uint8)) == "tiny"
    assert detector.check(np.full((1, 640), 128, np.uint8)) == "tiny"
    assert detector.check(np.full((24, 32, 3), 128, np.uint8)) is None
    # through the pipeline, with a grid that cannot fit such a frame: faults, no crash
    src = LatestFrameSource(lambda: TinyCapture(12), "tiny camera", is_file=True)
    events = []
    summary = run_camera(image_bundle, src, grid=(16, 16, 16), on_event=events.append,
                         min_frames=1, threshold=0.0, faults=FaultConfig(frozen_frames=0))
    assert summary.processed == 0 and summary.faults["tiny"] >= 1
    assert summary.read == summary.extra["fault_frames"]["tiny"] + summary.dropped == 12
    assert [(e["fault"], e["state"]) for e in events] == [("tiny", "start"), ("tiny", "end")]


class TinyCapture(RepeatingCapture):
    """2x2 uniform frames (a broken or misconfigured camera)."""

    def read(self):
        if self.n >= self.frames:
            return False, None
        self.n += 1
        return True, np.full((2, 2, 3), 128, np.uint8)


@pytest.mark.parametrize("lost", [1, 2, 3])
def test_after_a_slip_the_samples_are_exactly_the_sensors_again(lost):
    from edgecnn.deploy.samples import _RawFloatStream

    x = sensor_signal(1.0, seed=lost)
    data = x.tobytes()
    at = 5000 * 4 + 1                                # inside sample 5000
    stream = _RawFloatStream(RATE, None)
    for start in range(0, len(data) - lost, 4096):   # arrives in network-sized pieces
        piece = (data[:at] + data[at + lost:])[start:start + 4096]
        stream._decode(piece)
    pieces = list(stream._ready)
    assert stream.stats.realigned == 1 and stream.stats.slipped_bytes == 4 - lost
    gaps = [i for i, (_, gap) in enumerate(pieces) if gap]
    assert len(gaps) == 1
    before = np.concatenate([raw for raw, _ in pieces[:gaps[0]]])
    after = np.concatenate([raw for raw, _ in pieces[gaps[0]:]])
    assert 4990 <= len(before) <= 5000 and np.array_equal(before, x[:len(before)])
    assert len(after) >= len(x) - 5010 and np.array_equal(after, x[len(x) - len(after):])


def test_a_sensor_not_up_at_the_start_does_not_hold_the_other_sources(image_bundle,
                                                                      signal_bundle, tmp_path):
    import json

    from edgecnn.deploy.multi import run_many
    from edgecnn.deploy.options import Logging, plan_from_keywords
    from runtime_helpers import gray_frame, write_video

    video = write_video(tmp_path / "cam.avi", [gray_frame(60 + 20 * (i // 5)) for i in
                                               range(20)])
    x = sensor_signal(1.0)
    late = TcpSensor([x.tobytes(), "hold"], late=2.0)       # comes up after 2 s
    dead_url = f"tcp://127.0.0.1:{free_port()}"              # never comes up
    windows = len(range(0, len(x) - WINDOW + 1, 1024))
    # a timeout longer than the test: the dead source, listed first, gets one attempt
    # and then waits on its own, so the others are not held for its --connect-timeout
    backoff = Backoff(0.2, 0.5, connect_timeout=60)
    stop = StopFlag()
    log = tmp_path / "events.jsonl"
    sources = [
        (signal_bundle, plan_from_keywords("vibration", dead_url, name="fan", backoff=backoff)),
        (image_bundle, plan_from_keywords("camera", str(video), name="cam", min_frames=1)),
        (signal_bundle, plan_from_keywords("vibration", late.url, name="pump", hop=1024,
                                           backoff=backoff, max_windows=windows))]
    timer = threading.Timer(6.0, stop.set, args=("test over",))
    timer.start()
    try:
        # with an SQLite copy too: it belongs to the stepping thread, so the late source
        # is taken over there (its "disconnected" end was once written from the thread
        # that opened it: SQLite refused, and the source was never watched)
        fan, cam, pump = run_many(sources, Logging(log=str(log), sqlite=str(tmp_path / "e.db")),
                                  stop=stop)
    finally:
        timer.cancel()
        late.done.set()
    import sqlite3

    with sqlite3.connect(tmp_path / "e.db") as db:
        stored = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert stored == len(log.read_text().splitlines())
    assert cam.processed == 20 and cam.stop_reason == "end of source"
    assert cam.elapsed_s < fan.elapsed_s - 2   # its own time, not the whole run's
    assert pump.processed == windows and pump.stop_reason == "max windows reached"
    assert pump.extra["source_faults"]["disconnected"] >= 1
    assert fan.processed == 0 and fan.stop_reason == "never connected"
    assert fan.extra["source_faults"] == {"disconnected": 1}
    events = [json.loads(line) for line in log.read_text().splitlines()]
    states = {(e["source"], e["state"]) for e in events if e.get("fault") == "disconnected"}
    # the never-connected source's fault is ended with the run: every start is paired
    assert states == {("pump", "start"), ("pump", "end"), ("fan", "start"), ("fan", "end")}
    assert all(e["id"] for e in events)
    assert fan.stop_reason == "never connected" and fan.elapsed_s < 10
    # one source alone still fails after the timeout, as before (exit 2 from the CLI) ...
    short = Backoff(0.2, 0.5, connect_timeout=0.5)
    alone = plan_from_keywords("vibration", dead_url, name="fan", backoff=short)
    with pytest.raises(SourceError, match="--connect-timeout"):
        run_many([(signal_bundle, alone)], Logging())
    # ... but the service keeps waiting, a disconnected fault, until it is stopped
    stop = StopFlag()
    threading.Timer(1.5, stop.set, args=("SIGTERM",)).start()
    served, = run_many([(signal_bundle, alone)], Logging(log=str(tmp_path / "s.jsonl")),
                       stop=stop, keep_waiting=True)
    assert served.stop_reason == "never connected"
    served_events = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text()
                     .splitlines()]
    assert [(e["fault"], e["state"]) for e in served_events] == [("disconnected", "start"),
                                                                 ("disconnected", "end")]
    assert served_events[0]["detail"].endswith("connection refused (1 attempt); still trying")


def test_a_stop_while_one_source_is_awaited_ends_cleanly_with_a_summary(signal_bundle):
    from edgecnn.deploy.multi import run_many
    from edgecnn.deploy.options import Logging, plan_from_keywords

    plan = plan_from_keywords("vibration", f"tcp://127.0.0.1:{free_port()}", name="fan",
                              backoff=Backoff(0.2, 0.5, connect_timeout=60))
    stop = StopFlag()
    threading.Timer(1.0, stop.set, args=("SIGTERM",)).start()
    started = time.monotonic()
    summary, = run_many([(signal_bundle, plan)], Logging(), stop=stop)
    assert time.monotonic() - started < 10
    assert summary.processed == 0 and summary.stop_reason.startswith("never connected")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_sensor_sending_nan_for_seconds_is_nonfinite_not_a_slip(value):
    from edgecnn.deploy.samples import _RawFloatStream

    x = sensor_signal(3.0)
    x[12000:24000] = value                     # a second of "no reading"
    stream = _RawFloatStream(RATE, None)
    stream._decode(x.astype("<f4").tobytes())
    out = np.concatenate([raw for raw, _ in stream._ready])
    assert len(out) == len(x) and stream.stats.realigned == 0
    np.testing.assert_array_equal(np.isfinite(out), np.isfinite(x))


@needs_ffmpeg
def test_a_paced_recording_keeps_its_own_timestamps_across_a_gap(tmp_path):
    """--realtime plays a recording as the camera delivered it: a recording with a 1.5 s
    gap (an IP camera that paused) pauses as long, at the same nominal 20 frames/s."""
    video = tmp_path / "gap.mkv"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=96x64:rate=20", "-frames:v", "20", "-vf",
                    "setpts='if(gte(N,10),PTS+1.5/TB,PTS)'", "-fps_mode", "passthrough",
                    "-c:v", "mjpeg", str(video)], check=True, timeout=60)
    src = open_frame_source(str(video), realtime=True, backoff=Backoff(0.01, 0.01))
    assert src.fps == pytest.approx(20.0)
    arrived: dict[int, float] = {}
    deadline = time.monotonic() + 15
    while not src.exhausted and time.monotonic() < deadline:
        frame = src.read(0.5)
        if frame is not None:
            arrived[frame.index] = time.monotonic()
    src.close()
    assert src.exhausted and src.stats.read == 20
    before = max(t for i, t in arrived.items() if i < 10)
    after = min(t for i, t in arrived.items() if i >= 10)
    assert after - before >= 1.3            # 1.55 s between frames 9 and 10
    assert max(arrived.values()) - min(arrived.values()) >= 2.2   # 0.95 s of frames + gap


def test_reconnecting_to_a_sensor_host_that_does_not_answer_blocks_no_read(monkeypatch):
    """A powered-off sensor host drops the SYNs: the reconnect runs non-blocking across
    reads, so the stepping thread (every source of the run) is never held for the connect
    timeout."""
    import edgecnn.deploy.samples as samples

    monkeypatch.setattr(samples, "SOCKET_TIMEOUT", 1.0)
    x = sensor_signal(0.5)
    sensor = TcpSensor([x.tobytes(), "close"])
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)                       # a full accept queue: new SYNs go unanswered
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.settimeout(0.3)
        try:
            filler.connect(hole.getsockname())
        except OSError:
            pass
        fillers.append(filler)
    try:
        src = TcpSampleSource(sensor.url, RATE, backoff=Backoff(0.05, 0.05))
        src._address = hole.getsockname()   # the sensor's host goes dark after this stream
        longest, began = 0.0, time.monotonic()
        while time.monotonic() - began < 3.0:
            started = time.monotonic()
            src.read(0.0)
            longest = max(longest, time.monotonic() - started)
        kinds = [change.fault for change in src.poll_status()]
        src.close()
    finally:
        sensor.done.set()
        hole.close()
        for filler in fillers:
            filler.close()
    assert "disconnected" in kinds and src.stats.reconnects == 0
    assert longest < 0.5, longest       # before: each attempt held the read for 1 s


def test_a_byte_slip_in_a_resampled_stream_leaves_the_samples_before_it_intact():
    # 48 kHz in, 12 kHz out: what came before the slip is resampled by the filter that
    # read it, exactly as a stream without the slip; the gap starts a new filter after it
    from edgecnn.deploy.preprocess import StreamResampler
    from edgecnn.deploy.samples import _RawFloatStream

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((2, 20000)) * 0.5).astype("<f4")
    data = a.tobytes() + b.tobytes()[1:]              # one byte lost at the join
    stream = _RawFloatStream(12000.0, 48000.0)
    pieces = []
    for start in range(0, len(data), 8192):
        stream._decode(data[start:start + 8192])
        while (chunk := stream._next_chunk()) is not None:
            pieces.append(chunk)
    first_gap = next(i for i, c in enumerate(pieces) if c.gap)
    before = np.concatenate([c.samples for c in pieces[:first_gap]])
    alone = StreamResampler(48000.0, 12000.0)(a.astype(np.float64))
    assert stream.stats.realigned == 1 and len(before) >= len(alone) - 2
    np.testing.assert_allclose(before, alone[:len(before)], atol=1e-12)


def test_a_channel_for_a_stream_is_refused(tmp_path):
    from edgecnn.deploy.errors import InputError
    from edgecnn.deploy.samples import open_sample_source

    # interleaved channels on stdin or TCP were read as one signal, and classified
    for source in ("-", "tcp://127.0.0.1:9"):
        with pytest.raises(InputError, match="a stream is one channel"):
            open_sample_source(source, 12000.0, given_channel="0")


def test_samples_arriving_far_from_the_stated_rate_get_one_note(caplog):
    import logging

    from edgecnn.deploy.samples import RATE_CHECK_S, StdinSource

    def watch(rate_in, seconds, gap_at=None):
        source = StdinSource(12000.0)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            for t in range(int(seconds) + 1):   # one piece a second, as a sensor sends
                source._watch_rate(int(rate_in), gap=t == gap_at, now=100.0 + t)
        return [r.getMessage() for r in caplog.records if "samples arrive" in r.getMessage()]

    notes = watch(25600, RATE_CHECK_S + 5)               # a 25.6 kHz sensor read as 12 kHz
    assert len(notes) == 1 and "about 25600 per second" in notes[0] and "12000 Hz" in notes[0]
    assert watch(12000, RATE_CHECK_S + 5) == []           # as stated
    assert watch(8000, RATE_CHECK_S + 5)                   # an 8 kHz one: too few
    assert watch(25600, RATE_CHECK_S + 5, gap_at=10) == []  # a gap starts the count again


def _read_all(source) -> tuple[np.ndarray, list]:
    chunks = []
    while not source.exhausted:
        chunk = source.read(timeout=1.0)
        if chunk is not None:
            chunks.append(chunk.samples)
    return (np.concatenate(chunks) if chunks else np.zeros(0)), source.poll_status()


def test_a_big_endian_stream_is_read_as_such_not_realigned(tmp_path, caplog):
    """Network byte order, as many DAQs send: the slip search took it for a byte slip and
    a 1-byte shift read plausible garbage, which was classified."""
    import logging
    import os

    from edgecnn.deploy.samples import StdinSource

    x = sensor_signal(0.5).astype(np.float32)
    for dtype, noted in ((">f4", True), ("<f4", False)):
        read, write = os.pipe()
        os.write(write, x.astype(dtype).tobytes()[:-2])    # cut mid-sample at the end
        os.close(write)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            samples, changes = _read_all(StdinSource(12000.0, fd=read))
        os.close(read)
        assert ("big-endian" in caplog.text) is noted
        assert not [c for c in changes if c.fault == "realigned"]
        # every whole sample arrives as sent (the held-back ones too); the cut one is not
        np.testing.assert_allclose(samples, x[:-1], rtol=1e-6)


def test_the_first_try_of_a_stream_in_a_several_source_run_is_short(image_bundle, tmp_path,
                                                                   monkeypatch):
    """A stream that does not answer (a UDP port nobody sends to) held the start of every
    other source for OpenCV's 10 s open timeout; its first try is now short, and the
    tries that follow, in the background, take the full timeout."""
    import edgecnn.deploy.frames as frames
    from edgecnn.deploy.captures import OPEN_TIMEOUT_MS
    from edgecnn.deploy.multi import FIRST_OPEN_S, run_many
    from edgecnn.deploy.options import Logging, plan_from_keywords
    from runtime_helpers import gray_frame, write_video

    tries = []

    def no_answer(url, color=None, open_timeout_ms=OPEN_TIMEOUT_MS):
        tries.append(open_timeout_ms)
        raise SourceError(f"cannot open stream {url}: no answer")

    monkeypatch.setattr(frames, "open_url", no_answer)
    video = write_video(tmp_path / "cam.avi", [gray_frame(80)] * 5)
    backoff = Backoff(0.05, 0.1, connect_timeout=60)
    stop = StopFlag()
    timer = threading.Timer(1.0, stop.set, args=("test over",))
    timer.start()
    try:
        dead, cam = run_many([
            (image_bundle, plan_from_keywords("camera", "udp://127.0.0.1:9", name="dead",
                                              backoff=backoff)),
            (image_bundle, plan_from_keywords("camera", str(video), name="cam"))],
            Logging(), stop=stop)
    finally:
        timer.cancel()
    assert cam.processed == 5 and dead.stop_reason.startswith("never connected")
    assert tries[0] == int(FIRST_OPEN_S * 1000) < OPEN_TIMEOUT_MS
    assert len(tries) > 1 and set(tries[1:]) == {OPEN_TIMEOUT_MS}
