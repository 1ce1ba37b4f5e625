"""Events to a real Mosquitto broker: QoS 1, status, store-and-forward through an outage,
TLS with a test CA, bad URLs and an unreachable broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecnn.deploy.errors import InputError
from edgecnn.deploy.mqtt import MqttOptions, MqttSinks, options_from_url, parse_url
from edgecnn.deploy.options import Logging, plan_from_keywords
from edgecnn.deploy.run import run_logged
from mqtt_broker import Broker, Subscriber, free_port, make_test_ca, need_mosquitto
from runtime_helpers import gray_frame, level_for_class, make_image_bundle, write_video

EDGECNN = [sys.executable, "-c", "from edgecnn.cli import main; main()"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_image_bundle(tmp_path_factory.mktemp("mqtt") / "bundle", size=32)


def _video(path, cycles: int, hold: int = 5, fps: float = 25.0):
    classes = [1, 2, 3, 4] * cycles
    return write_video(path, [gray_frame(level_for_class(c)) for c in classes
                              for _ in range(hold)], fps)


def _log_ids(log: Path) -> list[str]:
    return [json.loads(line)["id"] for line in log.read_text().splitlines()]


@pytest.mark.parametrize("url, expected", [
    ("mqtt://", "names no broker host"),
    ("http://x", "must look like mqtt://"),
    ("mqtt://host:notaport/p", "must be a number in 1-65535"),
    ("mqtt://host:99999/p", "must be a number in 1-65535"),
    ("mqtt://host:1883/a/#", "must not hold"),
    ("mqtt://host:1883/a/+/b", "must not hold"),
    ("mqtt://host:1/p/#", "prefix 'p/#' must not hold"),
    ("mqtt://[::1:1883/p", "must look like mqtt://"),
    ("mqtt://host/" + "a" * 70000, "at most 1024"),
])
def test_bad_urls_are_refused_clearly(url, expected):
    with pytest.raises(InputError, match=expected):
        parse_url(url)


def test_url_parts_and_query_options(tmp_path):
    target = parse_url("mqtts://user:p%40ss@broker.local/plant/line-3")
    assert (target.tls, target.host, target.port, target.username, target.password,
            target.prefix) == (True, "broker.local", 8883, "user", "p@ss", "plant/line-3")
    options = options_from_url(f"mqtt://h:1884/x?spool={tmp_path}&spool_max=7")
    assert options.spool == str(tmp_path) and options.spool_max == 7
    with pytest.raises(InputError, match="unknown MQTT URL parameter"):
        options_from_url("mqtt://h/x?spoool=1")
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(InputError, match="are for mqtts:// URLs"):
        options_from_url(f"mqtt://h/x?ca={ca}")
    with pytest.raises(InputError, match="ca file .* not found"):
        MqttOptions("mqtts://h/x", ca=str(tmp_path / "missing.pem"))


def test_cli_refuses_a_bad_url_with_exit_2(bundle, tmp_path):
    video = _video(tmp_path / "v.avi", 1)
    proc = subprocess.run([*EDGECNN, "run", "camera", str(bundle), "--source", str(video),
                           "--mqtt", "http://x"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "must look like mqtt://" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_broker_down_for_6_s_loses_no_event(bundle, tmp_path):
    """`run camera --mqtt` on a realtime video; the broker stops mid-run for ~6 s and comes
    back: every id of the JSONL log reaches the persistent subscriber."""
    broker = Broker(tmp_path / "broker").start()
    subscriber = Subscriber(broker, "line/#")
    video = _video(tmp_path / "line.avi", cycles=16)   # 320 frames: 12.8 s at 25 fps
    log = tmp_path / "events.jsonl"
    spool = tmp_path / "spool"
    run = subprocess.Popen(
        [*EDGECNN, "run", "camera", str(bundle), "--source", str(video), "--realtime",
         "--min-frames", "2", "--quiet", "--log", str(log), "--fsync", "every",
         "--mqtt", f"{broker.url}/line?spool={spool}&status_interval=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert subscriber.wait_for(lambda: len(subscriber.payloads("/events")) >= 3)
        broker.stop()
        outage_started = len(_log_ids(log))
        time.sleep(6)
        made_during_outage = len(_log_ids(log)) - outage_started
        broker.start()
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    ids = _log_ids(log)
    assert made_during_outage >= 5
    assert subscriber.wait_for(
        lambda: set(ids) <= {p["id"] for p in subscriber.payloads("/events")}, 30)
    received = [p["id"] for p in subscriber.payloads("/events")]
    unique = list(dict.fromkeys(received))
    assert unique == sorted(unique) == ids          # in order, duplicates aside
    assert f"published {len(ids)}, pending 0" in out
    statuses = subscriber.payloads("/status")
    assert statuses[-1]["state"] == "offline" and statuses[-1]["mqtt"]["pending"] == 0
    assert any(s["state"] == "online" and "events" in s for s in statuses)
    subscriber.close()
    broker.stop()


def test_unreachable_broker_spools_and_sends_on_the_next_run(bundle, tmp_path, caplog):
    need_mosquitto()
    port = free_port()                      # nobody listens here yet
    video = _video(tmp_path / "v.avi", cycles=2)
    log = tmp_path / "events.jsonl"
    options = MqttOptions(f"mqtt://127.0.0.1:{port}/p", spool=str(tmp_path / "spool"),
                          flush_timeout=0.5)
    plan = plan_from_keywords("camera", str(video), min_frames=2, name="cam")
    with MqttSinks(options) as sinks:
        summary = run_logged(bundle, plan, Logging(log=str(log)), sinks=[sinks])
    ids = _log_ids(log)
    assert len(ids) == 8 and summary.processed == 40
    assert summary.extra["mqtt"] == "published 0, pending 8, dropped 0"
    assert f"cannot reach the broker 127.0.0.1:{port} (" in caplog.text
    assert "Connection refused" in caplog.text and "events are spooled in" in caplog.text
    # the broker appears on that port: the spooled events go out first, in order
    broker = Broker(tmp_path / "broker", port=port).start()
    subscriber = Subscriber(broker, "p/#", client_id="late")
    with MqttSinks(options) as sinks:
        summary = run_logged(bundle, plan, Logging(log=str(log)), sinks=[sinks])
    assert summary.extra["mqtt"] == "published 16, pending 0, dropped 0"
    assert subscriber.wait_for(lambda: len(subscriber.payloads("/events")) >= 16)
    assert [p["id"] for p in subscriber.payloads("/events")] == _log_ids(log)
    subscriber.close()
    broker.stop()


def test_spool_is_bounded_oldest_dropped_with_a_count(bundle, tmp_path):
    options = MqttOptions(f"mqtt://127.0.0.1:{free_port()}/p", spool=str(tmp_path / "s"),
                          spool_max=3, flush_timeout=0)
    video = _video(tmp_path / "v.avi", cycles=2)
    plan = plan_from_keywords("camera", str(video), min_frames=2, name="cam")
    log = tmp_path / "events.jsonl"
    with MqttSinks(options) as sinks:
        summary = run_logged(bundle, plan, Logging(log=str(log)), sinks=[sinks])
    assert summary.extra["mqtt"] == "published 0, pending 3, dropped 5"
    # what stays is the newest three events, in order: the oldest ones were dropped
    import sqlite3

    (spool,) = (tmp_path / "s").glob("*.sqlite")
    with sqlite3.connect(spool) as db:
        kept = [json.loads(payload)["id"] for (payload,) in
                db.execute("SELECT payload FROM spool ORDER BY seq")]
    assert kept == _log_ids(log)[-3:]


def test_tls_with_a_test_ca(bundle, tmp_path, caplog):
    tls = make_test_ca(tmp_path / "ca")
    broker = Broker(tmp_path / "broker", tls=tls).start()
    subscriber = Subscriber(broker, "secure/#", tls_ca=tls["ca"])
    video = _video(tmp_path / "v.avi", cycles=1)
    plan = plan_from_keywords("camera", str(video), min_frames=2, name="cam")
    options = MqttOptions(f"{broker.url}/secure", ca=tls["ca"], spool=str(tmp_path / "s"))
    with MqttSinks(options) as sinks:
        summary = run_logged(bundle, plan, sinks=[sinks])
    assert summary.extra["mqtt"] == "published 4, pending 0, dropped 0"
    assert subscriber.wait_for(lambda: len(subscriber.payloads("/cam/events")) == 4)
    # without the CA the broker's certificate is not trusted: nothing is sent, all kept
    untrusted = MqttOptions(f"{broker.url}/secure", spool=str(tmp_path / "s2"),
                            flush_timeout=1)
    with MqttSinks(untrusted) as sinks:
        summary = run_logged(bundle, plan, sinks=[sinks])
    assert summary.extra["mqtt"] == "published 0, pending 4, dropped 0"
    assert "TLS: the broker's certificate is not trusted" in caplog.text
    # plain MQTT to the TLS listener: the broker hangs up, and the log says so
    caplog.clear()
    plain = MqttOptions(broker.url.replace("mqtts://", "mqtt://") + "/secure",
                        spool=str(tmp_path / "s3"), flush_timeout=1)
    with MqttSinks(plain) as sinks:
        run_logged(bundle, plan, sinks=[sinks])
    assert "closed the connection before accepting it" in caplog.text
    assert "a TLS listener needs mqtts://" in caplog.text
    subscriber.close()
    broker.stop()


def test_serve_publishes_each_source_to_its_own_topics(bundle, tmp_path):
    from edgecnn.serve import serve
    from runtime_helpers import CALIBRATION, make_signal_bundle

    broker = Broker(tmp_path / "broker").start()
    subscriber = Subscriber(broker, "plant/#", client_id="plant")
    signal_bundle = make_signal_bundle(tmp_path / "sig", window_length=2048)
    for name in ("a", "b"):
        _video(tmp_path / f"{name}.avi", cycles=1)
    config = tmp_path / "line.toml"
    config.write_text(f"""
[run]
log = "events.jsonl"
min_frames = 2
bundle = "{bundle}"

[[camera]]
name = "cam-a"
source = "a.avi"

[[camera]]
name = "cam-b"
source = "b.avi"

[[vibration]]
name = "pump"
bundle = "{signal_bundle}"
source = "{CALIBRATION / 'cwru' / 'normal_0_97.mat'}"
threshold = 0.0
max_windows = 6

[mqtt]
url = "{broker.url}/plant/line-1"
spool = "spool"
""")
    summaries = serve(config, echo=lambda line: None)
    assert all(s.extra["mqtt"].endswith("pending 0, dropped 0") for s in summaries)
    events = [json.loads(l) for l in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {e["source"] for e in events} == {"cam-a", "cam-b", "pump"}
    assert subscriber.wait_for(lambda: len(subscriber.payloads("/events")) >= len(events))
    with subscriber.lock:
        topics = {p["id"]: t for t, p, _ in subscriber.messages if t.endswith("/events")}
    assert {e["id"]: f"plant/line-1/{e['source']}/events" for e in events} == topics
    offline = {t: p for t, p, _ in subscriber.messages if t.endswith("/status")}
    assert {p["state"] for p in offline.values()} == {"offline"} and len(offline) == 3
    assert (tmp_path / "spool" / "plant_line-1--pump.sqlite").exists()   # prefix and source
    subscriber.close()
    broker.stop()


def test_one_spool_takes_one_run_and_an_older_spool_is_taken_over(tmp_path):
    from edgecnn.deploy.errors import InputError
    from edgecnn.deploy.mqtt import spool_path
    from edgecnn.deploy.spool import Spool

    old = Spool(tmp_path / "cam.sqlite")            # an earlier version's file name
    old.append("plant/cam/events", b"{}")
    old.close()
    path = spool_path(tmp_path, "plant", "cam")
    assert path.name == "plant--cam.sqlite" and not (tmp_path / "cam.sqlite").exists()
    first = Spool(path)
    assert first.after(0, 10)[0][1] == "plant/cam/events"   # kept, with its topic
    with pytest.raises(InputError, match=r"MQTT spool .* is in use by another run .*"
                                         r"own source name or --mqtt topic prefix"):
        Spool(path)
    first.close()
    Spool(path).close()                                # free again once the run closed it


def test_status_is_retained_with_counters_and_current_faults(bundle, tmp_path):
    broker = Broker(tmp_path / "broker").start()
    frames = [gray_frame(level_for_class(2))] * 10 + [gray_frame(0)] * 40   # lens cap on
    video = write_video(tmp_path / "cap.avi", frames, fps=25.0)
    plan = plan_from_keywords("camera", str(video), min_frames=2, name="cam", realtime=True)
    options = MqttOptions(f"{broker.url}/s", spool=str(tmp_path / "spool"),
                          status_interval=0.2)
    subscriber = Subscriber(broker, "s/#", client_id="status")
    with MqttSinks(options) as sinks:
        run_logged(bundle, plan, sinks=[sinks])
    # the broker passes the last status on after the run's own acknowledgement: wait for it
    assert subscriber.wait_for(lambda: (subscriber.payloads("/cam/status") or [{}])[-1]
                               .get("state") == "offline", 5)
    statuses = subscriber.payloads("/cam/status")
    online = [s for s in statuses if s["state"] == "online"]
    assert any(s["current_faults"] == ["black"] and s["faults"] == {"black": s["faults"]["black"]}
               for s in online)
    assert statuses[-1]["state"] == "offline" and statuses[-1]["events"] == {"patches": 1}
    subscriber.close()
    # a late subscriber gets the retained status at once
    late = Subscriber(broker, "s/+/status", client_id="late-status")
    assert late.wait_for(lambda: late.payloads("/status"), 5)
    assert late.payloads("/status")[-1]["state"] == "offline"
    late.close()
    broker.stop()


def test_an_mqtt_password_is_never_quoted_in_a_message():
    from edgecnn.deploy.errors import InputError
    from edgecnn.deploy.mqtt import MqttOptions, parse_url
    from edgecnn.deploy.shown import shown_url

    assert shown_url("mqtt://line3:Secret@host:1883/x") == "mqtt://***@host:1883/x"
    # a password holding @ or /, a token as the user name: nothing of them shows
    for url in ("mqtt://u:p@PW_LEAK@host/x", "mqtt://u:pa/PW_LEAK@host:1/x",
                "mqtt://PW_LEAK@host/x"):
        assert "PW_LEAK" not in shown_url(url) and "://***@host" in shown_url(url)
    for url in ("mqtt://u:PW_LEAK@host:99999/x", "http://u:PW_LEAK@host/x",
                "mqtt://u:PW_LEAK@:1883/x", "mqtt://u:PW_LEAK@[::1/x",
                "mqtt://u:pa/PW_LEAK@host:99999/x"):
        with pytest.raises(InputError) as info:
            parse_url(url)
        assert "PW_LEAK" not in str(info.value) and "://***@" in str(info.value), info.value
    with pytest.raises(InputError, match="control characters"):
        parse_url("mqtt://host/line\x00x")
    with pytest.raises(InputError) as info:
        MqttOptions("mqtt://u:PW_LEAK@host/x", ca="ca.pem")
    assert "PW_LEAK" not in str(info.value)


def test_a_source_down_at_the_start_still_publishes_its_real_status(monkeypatch):
    # its "disconnected" event made its publisher before the run watched its loop, and
    # the loop it had then was a stand-in for the pipeline that opened later
    from types import SimpleNamespace

    import edgecnn.deploy.mqtt as mqtt
    from edgecnn.deploy.multi import _CurrentLoop

    class Publisher:
        def __init__(self, options, source, status=None):
            self.status_fn, self.written = status, []

        def write(self, event):
            self.written.append(event)

    monkeypatch.setattr(mqtt, "SourcePublisher", Publisher)
    monkeypatch.setattr(mqtt, "require_paho", lambda: None)
    sinks = mqtt.MqttSinks(options=None)
    sinks.write({"source": "pump", "type": "fault", "fault": "disconnected"})

    def loop(items):
        return SimpleNamespace(summary=SimpleNamespace(source="pump"),
                               status=lambda: {"items": items})

    pipeline = SimpleNamespace(loop=loop(0))          # the stand-in while it waits
    sinks.watch(_CurrentLoop(pipeline))
    publisher = sinks.publishers["pump"]
    assert publisher.status_fn() == {"items": 0}
    pipeline.loop = loop(46)                           # it opened: its real loop counts
    assert publisher.status_fn() == {"items": 46}


def test_two_sources_that_make_one_topic_level_are_refused_by_name(monkeypatch):
    # "a b.npz" and "a_b.npz" would be one client and one spool: the second was refused as
    # "in use by another run" naming this very run's pid
    from types import SimpleNamespace

    import edgecnn.deploy.mqtt as mqtt
    from edgecnn.deploy.errors import InputError

    monkeypatch.setattr(mqtt, "SourcePublisher", lambda options, source, status=None:
                        SimpleNamespace(status_fn=status))
    monkeypatch.setattr(mqtt, "require_paho", lambda: None)
    sinks = mqtt.MqttSinks(options=None)

    def loop(name):
        return SimpleNamespace(summary=SimpleNamespace(source=name), status=dict)

    sinks.watch(loop("a b.npz"))
    with pytest.raises(InputError, match=r"sources 'a b.npz' and 'a_b.npz' would publish "
                                         r"under the same MQTT topic level 'a_b.npz'"):
        sinks.watch(loop("a_b.npz"))
    with pytest.raises(InputError, match="the same MQTT topic level"):   # its first event
        sinks.write({"source": "a_b.npz", "type": "fault", "fault": "disconnected"})
