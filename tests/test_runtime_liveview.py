"""The live view: a real run served over HTTP on a free loopback port, read with urllib
and rendered by headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from edgecnn.cli import main as cli_main
from edgecnn.deploy.errors import InputError
from edgecnn.deploy.httpview import HttpOptions
from edgecnn.deploy.multi import run_many
from edgecnn.deploy.options import Logging, plan_from_keywords
from edgecnn.deploy.runstats import StopFlag
from runtime_helpers import NEU_CLASSES, gray_frame, level_for_class, make_image_bundle, write_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
METRIC_LINE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?[0-9.e+-]+$|^# (HELP|TYPE) ')


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_image_bundle(tmp_path_factory.mktemp("live") / "bundle", size=32)


def _video(path, classes, hold=25, tail_black=0):
    rng = np.random.default_rng(0)
    frames = [gray_frame(level_for_class(c)) + rng.integers(0, 3, (96, 128, 3), dtype=np.uint8)
              for c in classes for _ in range(hold)]
    frames += [gray_frame(0)] * tail_black
    return write_video(path, frames)


class LiveRun:
    """run_many in a thread with the live view on a free port; ``url`` once serving."""

    def __init__(self, sources, http: HttpOptions, snapshots=None):
        self.urls, self.summaries, self.errors = [], [], []
        self.stop = StopFlag()

        def go():
            try:
                self.summaries = run_many(sources, Logging(), stop=self.stop, http=http,
                                          on_http=self.urls.append)
            except Exception as exc:   # surfaced by the test
                self.errors.append(exc)

        self.thread = threading.Thread(target=go, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.urls and not self.errors and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not self.errors, self.errors
        self.url = self.urls[0].split("?")[0]
        return self

    def __exit__(self, *exc):
        self.stop.set("test over")
        self.thread.join(timeout=30)

    def get(self, path, token=None, headers=None):
        request = urllib.request.Request(self.url + path, headers=headers or {})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()


def _wait_for(condition, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    return condition()


def test_status_events_metrics_health_and_frames(bundle, tmp_path):
    long = _video(tmp_path / "long.avi", [1, 2, 3, 4] * 3)
    short = _video(tmp_path / "short.avi", [2], hold=10)
    sources = [(bundle, plan_from_keywords("camera", str(long), realtime=True, name="line-1",
                                           min_frames=2)),
               (bundle, plan_from_keywords("camera", str(short), realtime=True, name="line-2",
                                           min_frames=2))]
    with LiveRun(sources, HttpOptions("127.0.0.1:0")) as run:
        status, headers, body = run.get("")
        assert status == 200 and b"edgecnn live view" in body
        assert headers["Content-Type"].startswith("text/html")
        assert b"https://" not in body and b"http://" not in body   # nothing from elsewhere

        # events with increasing sequence numbers; ?since= gives only newer ones
        events = _wait_for(lambda: json.loads(run.get("api/events")[2])["events"])
        assert events and all(e["source"] in ("line-1", "line-2") for e in events)
        newest = events[-1]["seq"]
        later = json.loads(run.get(f"api/events?since={newest}")[2])["events"]
        assert all(e["seq"] > newest for e in later)

        status = json.loads(run.get("api/status")[2])
        names = [s["source"] for s in status["sources"]]
        assert names == ["line-1", "line-2"]
        assert status["sources"][0]["labels"] == list(NEU_CLASSES)

        # a frame only once someone watches: first 503 (or a frame), then a JPEG
        run.get("frame/line-1.jpg")
        code, headers, jpeg = _wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
            run.get("frame/line-1.jpg")))
        assert headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
        assert run.get("frame/nowhere.jpg")[0] == 404

        metrics = run.get("metrics")[2].decode()
        for line in metrics.strip().splitlines():
            assert METRIC_LINE.match(line), line
        for family in ("edgecnn_frames_total", "edgecnn_events_total",
                       "edgecnn_faults_total", "edgecnn_inference_seconds_bucket",
                       "edgecnn_source_up", "edgecnn_source_faults_total",
                       "edgecnn_reconnects_total", "edgecnn_dropped_total"):
            assert f'{family}{{source="line-1"' in metrics
        assert 'edgecnn_inference_seconds_bucket{source="line-1",le="+Inf"}' in metrics
        assert 'edgecnn_source_faults_total{source="line-1",fault="disconnected"} 0' in metrics

        # the short source ends: health turns 503 and names it
        code, _, body = _wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
            run.get("healthz")), seconds=20)
        health = json.loads(body)
        assert code == 503 and health["sources"]["line-2"]["up"] is False
        assert "end of source" in health["sources"]["line-2"]["reason"]

        # read-only, no files by path
        request = urllib.request.Request(run.url + "api/status", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
        assert run.get("../../etc/passwd")[0] == 404
        assert run.get("snapshot/..%2F..%2Fetc%2Fpasswd")[0] == 400


def test_token_guards_every_request(bundle, tmp_path):
    video = _video(tmp_path / "v.avi", [1, 2], hold=50)
    sources = [(bundle, plan_from_keywords("camera", str(video), realtime=True, name="cam"))]
    with LiveRun(sources, HttpOptions("127.0.0.1:0", token="s3cret")) as run:
        assert run.get("api/status")[0] == 401
        assert run.get("api/status", token="wrong")[0] == 401
        assert run.get("api/status", token="s3cret")[0] == 200
        assert run.get("metrics?token=s3cret")[0] == 200


def test_other_addresses_need_a_token(bundle, tmp_path, capsys):
    with pytest.raises(InputError, match="--http-token"):
        HttpOptions("0.0.0.0:8080").address()
    with pytest.raises(InputError, match="HOST:PORT"):
        HttpOptions("8080").address()
    with pytest.raises(InputError, match="at least 12 characters"):
        HttpOptions("0.0.0.0:8080", token=" x ").address()
    assert HttpOptions("0.0.0.0:8080", token="a-long-enough-token").address() == \
        ("0.0.0.0", 8080)
    video = _video(tmp_path / "v.avi", [1], hold=5)
    with pytest.raises(SystemExit) as exited:
        cli_main(["run", "camera", str(bundle), "--source", str(video),
                  "--http", "0.0.0.0:8080"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--http-token" in err and "Traceback" not in err


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed "
                                             "(apt-get install chromium)")
def test_page_renders_in_headless_chromium(bundle, tmp_path):
    video = _video(tmp_path / "v.avi", [1, 2, 3, 4] * 3)
    sources = [(bundle, plan_from_keywords("camera", str(video), realtime=True,
                                           name="press-7", min_frames=2))]
    with LiveRun(sources, HttpOptions("127.0.0.1:0")) as run:
        _wait_for(lambda: json.loads(run.get("api/events")[2])["events"])
        common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1100,900",
                  "--virtual-time-budget=4000"]
        dom = subprocess.run(common + ["--dump-dom", run.url], capture_output=True, text=True,
                             timeout=120).stdout
        shot = tmp_path / "page.png"
        subprocess.run(common + [f"--screenshot={shot}", run.url], capture_output=True,
                       timeout=120)
    assert "press-7" in dom and all(name in dom for name in NEU_CLASSES)
    assert re.search(r'<img class="frame"[^>]*data-loaded="1"', dom), dom[:2000]
    import cv2

    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[1] == 1100
    assert picture.std() > 10           # a rendered page, not a blank canvas


def test_clients_hanging_up_leave_no_traceback(bundle, tmp_path, capsys):
    import socket
    import struct

    video = _video(tmp_path / "v.avi", [1, 2], hold=200)
    sources = [(bundle, plan_from_keywords("camera", str(video), realtime=True, name="cam"))]
    with LiveRun(sources, HttpOptions("127.0.0.1:0")) as run:
        host, port = run.url.split("//")[1].strip("/").split(":")
        for i in range(20):
            client = socket.create_connection((host, int(port)), timeout=5)
            request = b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n"
            client.sendall(request if i % 2 else request[:12])  # whole, or cut short
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()                                       # a reset, not a goodbye
        time.sleep(0.5)
        assert run.get("api/status")[0] == 200
    assert "Traceback" not in capsys.readouterr().err


def test_idle_clients_are_cut_off_and_a_flood_cannot_take_the_run(bundle, tmp_path,
                                                                    monkeypatch):
    import socket

    from edgecnn.deploy import httpview

    monkeypatch.setattr(httpview._Handler, "timeout", 1.0)
    monkeypatch.setattr(httpview, "MAX_CONNECTIONS", 8)
    video = _video(tmp_path / "v.avi", [1, 2], hold=200)
    sources = [(bundle, plan_from_keywords("camera", str(video), realtime=True, name="cam"))]
    with LiveRun(sources, HttpOptions("127.0.0.1:0")) as run:
        host, port = run.url.split("//")[1].strip("/").split(":")
        before = threading.active_count()
        idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(40)]
        for client in idle:
            client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")   # never finished
        time.sleep(0.5)
        assert threading.active_count() - before <= 8     # the rest were closed at once
        # a silent client is cut off after the timeout: the server closes its end
        idle[0].settimeout(5)
        assert idle[0].recv(100) == b""
        time.sleep(1.5)
        assert run.get("api/status")[0] == 200            # the page answers again
        for client in idle:
            client.close()



def test_a_client_trickling_its_headers_is_cut_off_at_the_deadline(bundle, tmp_path,
                                                                   monkeypatch):
    # a byte every 0.3 s never lets one read wait for its whole timeout: the request line
    # and headers together get HEADERS_DEADLINE_S, then the server closes its end
    import socket

    from edgecnn.deploy import httpview

    monkeypatch.setattr(httpview, "HEADERS_DEADLINE_S", 1.0)
    video = _video(tmp_path / "v.avi", [1, 2], hold=200)
    sources = [(bundle, plan_from_keywords("camera", str(video), realtime=True, name="cam"))]
    with LiveRun(sources, HttpOptions("127.0.0.1:0")) as run:
        host, port = run.url.split("//")[1].strip("/").split(":")
        client = socket.create_connection((host, int(port)), timeout=5)
        started, cut = time.monotonic(), None
        for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40:
            try:
                client.sendall(bytes([byte]))
            except OSError:
                cut = time.monotonic() - started
                break
            client.settimeout(0.3)
            try:
                if client.recv(100) == b"":
                    cut = time.monotonic() - started
                    break
            except TimeoutError:
                pass
        client.close()
        assert cut is not None and cut < 3.0, cut
        assert run.get("api/status")[0] == 200


def test_without_a_token_the_page_answers_only_to_this_machines_names(bundle, tmp_path):
    video = _video(tmp_path / "v.avi", [1], hold=200)
    sources = [(bundle, plan_from_keywords("camera", str(video), realtime=True, name="cam"))]
    with LiveRun(sources, HttpOptions("127.0.0.1:0")) as run:
        port = run.url.split(":")[-1].strip("/")
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert run.get("api/status", headers={"Host": host})[0] == 200, host
        for host in ("evil.example", f"evil.example:{port}", "10.0.0.5"):
            status, _, body = run.get("api/status", headers={"Host": host})
            assert status == 421 and b"only to 127.0.0.1" in body, host


def test_events_since_a_seq_page_forward_through_everything_kept():
    from edgecnn.deploy.live import RECENT_EVENTS, LiveHub

    hub = LiveHub([])
    for i in range(250):
        hub.write({"type": "fault", "fault": "black", "frame": i})
    page = hub.page(since=10, limit=100)
    assert [e["seq"] for e in page["events"]] == list(range(11, 111)) and page["more"]
    assert [e["seq"] for e in hub.page(since=200)["events"]] == list(range(201, 251))
    assert not hub.page(since=200)["more"]
    first = hub.page()                            # a first look: the newest
    assert [e["seq"] for e in first["events"]] == list(range(151, 251))
    assert not first["more"]
    start = hub.page(since=0)                     # a poller from the start: the oldest
    assert [e["seq"] for e in start["events"]] == list(range(1, 101)) and start["more"]
    for i in range(RECENT_EVENTS):
        hub.write({"type": "fault", "fault": "black", "frame": i})
    assert hub.page(since=10)["oldest"] == 251    # older than that was dropped
    # a restarted service numbers from 1 again: its pages say they are another run's
    again = LiveHub([])
    again.write({"type": "fault", "fault": "black", "frame": 0})
    assert again.page(since=250)["events"] == [] and again.page()["events"][0]["seq"] == 1
    assert again.page()["run"] != hub.page()["run"] == hub.page(since=3)["run"]


def test_a_preview_frame_is_drawn_once_for_every_viewer(monkeypatch):
    import numpy as np

    import edgecnn.deploy.live as live

    preview = live.SourcePreview()
    encoded = []
    real = live.cv2.imencode
    monkeypatch.setattr(live.cv2, "imencode", lambda *a, **k: encoded.append(1) or real(*a, **k))
    assert preview.jpeg() is None
    preview.offer(np.full((32, 32), 90, np.uint8), [], [], [], None)
    first = preview.jpeg()
    assert first[:2] == b"\xff\xd8" and all(preview.jpeg() == first for _ in range(5))
    assert len(encoded) == 1
    preview.offer(np.full((32, 32), 30, np.uint8), [], [], [], None)
    assert preview.jpeg() != first and len(encoded) == 2


def test_the_live_rate_is_recent_so_a_source_gone_quiet_shows_zero():
    from types import SimpleNamespace

    from edgecnn.deploy.live import LiveHub

    loop = SimpleNamespace(summary=SimpleNamespace(source="cam"), preview=None, started=0.0)
    hub = LiveHub([SimpleNamespace(loop=loop)])
    assert hub._recent_rate("cam", 300, 3.0) == 100.0     # a first look: since the start
    assert hub._recent_rate("cam", 800, 8.0) == 100.0
    assert hub._recent_rate("cam", 800, 30.0) == 0.0      # nothing for 22 s


def test_the_printed_page_address_never_holds_the_token():
    from types import SimpleNamespace

    from edgecnn.deploy.httpview import page_url

    shown = page_url(SimpleNamespace(url="http://0.0.0.0:8080/", token="TopSecretToken123"))
    assert "TopSecretToken123" not in shown and shown.endswith("?token=<the --http-token>")
    assert page_url(SimpleNamespace(url="http://127.0.0.1:8080/", token=None)) == \
        "http://127.0.0.1:8080/"


def test_a_snapshot_replaced_by_a_link_is_not_served(tmp_path):
    # anyone who can write to the snapshot folder could point a snapshot at another file
    from edgecnn.deploy.httpview import _read_snapshot

    secret = tmp_path / "secret.txt"
    secret.write_text("not for the page")
    shot = tmp_path / "snapshots" / "cam_000001.jpg"
    shot.parent.mkdir()
    shot.write_bytes(b"\xff\xd8jpeg")
    assert _read_snapshot(shot) == b"\xff\xd8jpeg"
    shot.unlink()
    shot.symlink_to(secret)
    assert _read_snapshot(shot) is None and _read_snapshot(tmp_path / "snapshots") is None


def test_a_port_in_use_fails_the_start_and_leaves_no_fresh_log(bundle, tmp_path):
    import socket

    video = _video(tmp_path / "v.avi", [1], hold=3)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        log, store = tmp_path / "events.jsonl", tmp_path / "events.db"
        with pytest.raises(InputError, match="cannot listen on"):
            run_many([(bundle, plan_from_keywords("camera", str(video), name="cam"))],
                     Logging(log=str(log), sqlite=str(store)),
                     http=HttpOptions(f"127.0.0.1:{taken.getsockname()[1]}"))
    finally:
        taken.close()
    assert not log.exists() and not store.exists()
