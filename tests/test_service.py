"""`edgecnn serve CONFIG.toml` and `edgecnn service install`: one file for a line's
sources, errors naming file, line and key, SIGTERM, the systemd unit."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecnn.deploy.errors import InputError
from edgecnn.serviceconfig import key_line, load_config
from runtime_helpers import (
    CALIBRATION,
    NEU_CLASSES,
    gray_frame,
    level_for_class,
    make_image_bundle,
    make_signal_bundle,
    write_video,
)

EDGECNN = [sys.executable, "-c", "from edgecnn.cli import main; main()"]
RECORDING = CALIBRATION / "cwru" / "normal_0_97.mat"


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    """A folder with an image and a signal bundle and two videos (relative paths)."""
    d = tmp_path_factory.mktemp("line")
    make_image_bundle(d / "img", size=32)
    make_signal_bundle(d / "sig", window_length=2048)
    for name, classes in (("a.avi", [1, 2, 3]), ("b.avi", [4, 3, 2, 1])):
        write_video(d / name, [gray_frame(level_for_class(c)) for c in classes
                               for _ in range(4)])
    return d


CONFIG = """\
[run]
log = "events.jsonl"
min_frames = 2

[[camera]]
name = "cam-a"
bundle = "img"
source = "a.avi"

[[camera]]
name = "cam-b"
bundle = "img"
source = "b.avi"
class_threshold = {{ patches = 0.5 }}
ignore_class = ["crazing"]
{camera_extra}
[[vibration]]
name = "pump"
bundle = "sig"
source = "{recording}"
threshold = 0.0
max_windows = 10
{extra}"""


def _config(directory: Path, camera_extra: str = "", extra: str = "",
            name: str = "line.toml") -> Path:
    path = directory / name
    path.write_text(CONFIG.format(recording=RECORDING, camera_extra=camera_extra,
                                  extra=extra))
    return path


def _cli(*args, cwd=None):
    return subprocess.run([*EDGECNN, *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_two_cameras_and_a_sensor_from_one_file(line):
    (line / "events.jsonl").unlink(missing_ok=True)
    proc = _cli("serve", _config(line), cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(" run on ") == 3
    assert "camera run on cam-a (end of source)" in proc.stdout
    assert "vibration run on pump (max windows reached)" in proc.stdout
    events = [json.loads(l) for l in (line / "events.jsonl").read_text().splitlines()]
    by_source: dict[str, list] = {}
    for event in events:
        by_source.setdefault(event["source"], []).append(event)
    assert [e["class"] for e in by_source["cam-a"]] == list(NEU_CLASSES[1:4])
    assert [e["class"] for e in by_source["cam-b"]] == [NEU_CLASSES[i] for i in (4, 3, 2, 1)]
    assert len(by_source["pump"]) >= 1
    assert len({e["id"] for e in events}) == len(events)
    # one line per event on stderr, naming its source and id
    for event in events:
        assert f"edgecnn.{event['source']}: " in proc.stderr and event["id"] in proc.stderr


def test_check_validates_without_running(line):
    (line / "events.jsonl").unlink(missing_ok=True)
    proc = _cli("serve", "--check", _config(line))
    assert proc.returncode == 0, proc.stderr
    assert "OK (3 sources)" in proc.stdout
    assert not (line / "events.jsonl").exists()


def test_check_opens_the_storage_the_start_would_refuse(line):
    # ExecStartPre must fail where ExecStart would, or the unit loops on Restart=on-failure
    picture = line / "picture.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    for log, message in (('"/proc/nope/events.jsonl"', "cannot open event log"),
                         (f'"{picture}"', "is not an edgecnn event log")):
        path = _config(line, name="storage.toml")
        path.write_text(path.read_text().replace('log = "events.jsonl"', f"log = {log}"))
        proc = _cli("serve", "--check", path)
        assert proc.returncode == 2 and "storage.toml: [run]: " in proc.stderr, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
    assert picture.read_bytes().startswith(b"\x89PNG")
    (line / "events.jsonl").unlink(missing_ok=True)
    assert _cli("serve", "--check", _config(line)).returncode == 0
    assert not (line / "events.jsonl").exists()       # the check made it, and removed it



def test_check_beside_the_running_service_leaves_its_files_alone(line):
    # the usual "check my edited config" while the service runs: it holds the log (and
    # its lock); the check neither fails on the lock nor repairs or removes anything
    from edgecnn.deploy.events import EventLog

    log = line / "held" / "events.jsonl"
    log.parent.mkdir(exist_ok=True)
    log.write_bytes(b'{"id":"1","time":"2026-12-04T10:00:00Z","type":"defect","class":"a"}\n'
                    b'{"id":"2","time":"2026-')             # a cut last line
    before = log.read_bytes()
    path = _config(line, name="held.toml")
    path.write_text(path.read_text().replace('log = "events.jsonl"',
                                             f'log = "{log}"\nsqlite = "{line}/held/e.db"'))
    proc = _cli("serve", "--check", path)          # nobody runs: still read-only
    assert proc.returncode == 0, proc.stderr
    assert log.read_bytes() == before and not (line / "held" / "events.jsonl.torn").exists()
    assert not (line / "held" / "e.db").exists()
    with EventLog(log) as running:                  # the service's writer, lock held
        running.write({"id": "3", "time": "2026-12-04T10:00:01Z", "type": "defect",
                       "class": "a"})
        held = log.read_bytes()
        proc = _cli("serve", "--check", path)
        assert proc.returncode == 0 and "in use" not in proc.stderr, proc.stderr
        assert log.read_bytes() == held
    # a folder where no file can be made is still refused, for the SQLite store too
    path.write_text(path.read_text().replace(f"{line}/held/e.db", "/proc/e.db"))
    proc = _cli("serve", "--check", path)
    assert proc.returncode == 2 and "cannot open SQLite event store /proc/e.db" in proc.stderr


@pytest.mark.parametrize("camera_extra, extra, line_no, message", [
    ('min_framse = 3\n', "", 16, "[[camera]] #2 key 'min_framse': unknown key 'min_framse'; "
                                 "did you mean min_frames"),
    ('min_frames = "3"\n', "", 16, "key 'min_frames': must be an integer; found str '3'"),
    ('realtime = 1\n', "", 16, "key 'realtime': must be true or false"),
    ('roi = "1,2"\n', "", 16, "key 'roi': --roi must look like x,y,w,h"),
    ('tiles = "2x2"\ngrid = "8x8:4"\n', "", 16, "key 'tiles': give either --tiles"),
    ('ignore_class = "crazing"\n', "", None, "Cannot overwrite a value"),
    ("", '[mqtt]\nurl = "http://x"\n', 24, "[mqtt] key 'url': an MQTT URL must look like"),
    ("", '[mqtt]\nurl = "mqtt://h/p"\nspool_max = "many"\n', 25,
     "[mqtt] key 'spool_max': must be an integer"),
    ("", '[http]\nlisten = "127.0.0.1:8080"\nport = 1\n', 25, "[http] key 'port'"),
    # values the run refuses are refused here, with their own key (not 'bundle')
    ('threshold = -0.5\n', "", 16, "key 'threshold': --threshold must be a confidence in"),
    ('min_frames = -3\n', "", 16, "key 'min_frames': --min-frames / --min-windows must be"),
    ('threads = 100000\n', "", 16, "key 'threads': --threads must be a whole number 1-256"),
    ("", 'hop = 0\n', 23, "key 'hop': --hop must be a whole number of samples >= 1"),
    ("", 'sample_rate = -12000\n', 23,
     "key 'sample_rate': --sample-rate: expected a positive number of Hz"),
    ('snapshots = "snaps"\nsnapshots_max_mb = -1\n', "", 17,
     "key 'snapshots_max_mb': --snapshots-max-mb must be a positive number of MB up to"),
    # retention the clock cannot reach passed the check, then the start overflowed
    ('snapshots = "snaps"\nsnapshots_max_mb = inf\n', "", 17,
     "key 'snapshots_max_mb': --snapshots-max-mb must be a positive number of MB"),
    ('snapshots = "snaps"\nsnapshots_keep_days = 1e9\n', "", 17,
     "key 'snapshots_keep_days': --snapshots-keep-days must be a positive number of days"),
    ('snapshots = ""\n', "", 16, "key 'snapshots': is empty: expected a path"),
    ('show = true\n', "", 16, "key 'show': a service has no screen"),
    ('max_frames = 0\n', "", 16, "key 'max_frames': --max-frames / --max-windows must be"),
    (f'threshold = {"9" * 400}\n', "", 16, "key 'threshold': must be a number a float can hold"),
    ('snapshots = "a\\u0000b"\n', "", 16, "key 'snapshots': must be a string without NUL"),
])
def test_bad_keys_name_file_line_and_key(line, camera_extra, extra, line_no, message):
    path = _config(line, camera_extra, extra, name="bad.toml")
    with pytest.raises(InputError) as info:
        load_config(path)
    text = str(info.value)
    assert message in text
    if line_no:
        assert text.startswith(f"{path} line {line_no}: ")


def test_a_missing_file_source_fails_the_check_with_its_resolved_path(line):
    path = line / "missing.toml"
    path.write_text(CONFIG.format(recording=RECORDING, camera_extra="", extra="")
                    .replace('source = "b.avi"', 'source = "../nothere.avi"'))
    with pytest.raises(InputError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"{path} line 13: ") and "key 'source'" in text
    assert f"{(line / '../nothere.avi')} does not exist" in text


def test_an_empty_source_and_a_bom(line):
    path = line / "empty.toml"
    path.write_text('[[camera]]\nname = "a"\nbundle = "img"\nsource = ""\n')
    with pytest.raises(InputError, match="line 4: .*key 'source': is empty"):
        load_config(path)
    path.write_text('\ufeff[[camera]]\nname = "a"\nbundle = "img"\nsource = "a.avi"\n',
                    encoding="utf-8")  # Windows Notepad's byte-order mark
    assert len(load_config(path).sources) == 1


def test_a_bare_shipped_name_is_the_shipped_bundle_as_on_the_command_line(line):
    (line / "neu").mkdir(exist_ok=True)          # a folder of that name beside the config
    path = line / "shipped.toml"
    path.write_text('[[camera]]\nname = "a"\nbundle = "neu"\nsource = "a.avi"\n'
                    '[[camera]]\nname = "b"\nbundle = "./neu"\nsource = "a.avi"\n')
    (shipped, _), (local, _) = load_config(path).sources
    assert shipped == "neu" and local == str(line / "neu")


def test_duplicate_and_missing_names(line):
    path = line / "dup.toml"
    path.write_text(_config(line).read_text().replace('name = "cam-b"', 'name = "cam-a"'))
    with pytest.raises(InputError, match=r"line 11: \[\[camera\]\] #2 key 'name': duplicate "
                                         r"name 'cam-a' \(also \[\[camera\]\] #1\)"):
        load_config(path)
    path.write_text(_config(line).read_text().replace('name = "pump"\n', ''))
    with pytest.raises(InputError, match=r"line 17: \[\[vibration\]\] #1: needs a 'name'"):
        load_config(path)


def test_unknown_key_through_the_cli_exits_2_with_its_line(line):
    path = _config(line, 'tiles = "2x2"\nthreshhold = 0.7\n', name="bad.toml")
    proc = _cli("serve", path)
    assert proc.returncode == 2
    assert f"{path} line 17: [[camera]] #2 key 'threshhold': unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_opens_bundles_and_knows_their_classes(line):
    path = _config(line).with_name("classes.toml")
    path.write_text(_config(line).read_text().replace("patches = 0.5", "patchez = 0.5"))
    proc = _cli("serve", "--check", path)
    assert proc.returncode == 2
    assert "line 14: [[camera]] #2 key 'class_threshold' (cam-b): unknown class name(s) " \
           "['patchez']" in proc.stderr
    path.write_text(_config(line).read_text().replace('bundle = "sig"', 'bundle = "img"'))
    proc = _cli("serve", "--check", path)
    assert proc.returncode == 2 and "key 'bundle' (pump)" in proc.stderr
    assert "needs a vibration model" in proc.stderr


def test_every_run_option_is_a_config_key():
    """The config keys come from the run commands' options: nothing to keep in sync."""
    from edgecnn import serviceconfig as config
    from edgecnn.cli_runtime import run_camera_command, run_vibration_command

    for kind, command in (("camera", run_camera_command), ("vibration", run_vibration_command)):
        keys = set(config._run_options(kind))
        longs = {o[2:].replace("-", "_") for p in command.params for o in p.opts
                 if o.startswith("--")}
        assert keys == longs


def test_a_service_may_say_show_false_and_hints_name_real_keys(line):
    path = _config(line, 'show = false\n', name="noshow.toml")
    assert len(load_config(path).sources) == 3
    from edgecnn.serviceconfig import _counterpart

    assert _counterpart("min_frames", {"min_windows"}) == "'min_windows'"
    assert _counterpart("frozen_frames", {"min_windows"}) == "other keys"


@pytest.mark.parametrize("run_lines, message", [
    ("threshold = 7\n", "[run] key 'threshold': --threshold must be a confidence"),
    ("sqlite_keep_days = inf\nsqlite = \"e.db\"\n",
     "[run] key 'sqlite_keep_days': --sqlite-keep-days must be a positive number of days"),
    ("rotate_mb = -1\n", "[run] key 'rotate_mb': --rotate-mb must be"),
    # a default no source of this config takes was silently ignored
    ("min_windows = 2\n", "[run] key 'min_windows': is a default for [[vibration]] "
                          "sources only, and this config has none (a [[camera]] takes "
                          "'min_frames')"),
])
def test_bad_run_keys_are_named_in_run(line, run_lines, message):
    path = line / "run.toml"
    path.write_text(f'[run]\nlog = "events.jsonl"\n{run_lines}\n[[camera]]\nname = "c"\n'
                    f'bundle = "img"\nsource = "a.avi"\n')
    with pytest.raises(InputError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(info.value).startswith(f"{path} line 3: ")


def test_key_line_finds_keys_in_their_table():
    text = ('[run]\nthreshold = 0.5\n[[camera]]\nname = "a"\n\n[[camera]]\n  name = "b"\n'
            'threshold=0.9\n[camera.class_threshold]\nx = 1\n')
    assert key_line(text, "run", 0, "threshold") == 2
    assert key_line(text, "camera", 1, "threshold") == 8
    assert key_line(text, "camera", 0, "threshold") is None
    assert key_line(text, "camera", 1, "name") == 7
    assert key_line(text, "camera", 1) == 6
    assert key_line(text, "camera", 1, "class_threshold") == 9


def test_sigterm_stops_every_source_with_exit_0(line, tmp_path):
    long_video = write_video(tmp_path / "long.avi", [gray_frame(level_for_class(c))
                                                     for c in [1, 2, 3, 4] * 20
                                                     for _ in range(5)])
    path = tmp_path / "live.toml"
    path.write_text(f"""
[run]
log = "events.jsonl"
realtime = true
json = "summaries.json"

[[camera]]
name = "cam-1"
bundle = "{line / 'img'}"
source = "{long_video}"

[[vibration]]
name = "pump"
bundle = "{line / 'sig'}"
source = "{RECORDING}"
""")
    proc = subprocess.Popen([*EDGECNN, "serve", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = tmp_path / "events.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "camera run on cam-1 (SIGTERM)" in out and "vibration run on pump (SIGTERM)" in out
    summaries = json.loads((tmp_path / "summaries.json").read_text())["sources"]
    assert [s["source"] for s in summaries] == ["cam-1", "pump"]
    assert all(s["stop_reason"] == "SIGTERM" for s in summaries)


def test_service_install_writes_a_unit(line, tmp_path):
    config = _config(line)
    proc = _cli("service", "install", config, "--unit-dir", tmp_path, "--user", "inspect")
    assert proc.returncode == 0, proc.stderr
    unit = (tmp_path / "edgecnn.service").read_text()
    exe = Path(sys.executable).parent / "edgecnn"
    assert f"ExecStart={exe} serve {config.resolve()}" in unit
    assert "Restart=on-failure" in unit and "User=inspect" in unit
    assert "StandardError=journal" in unit and not re.search("@[A-Z]+@", unit)
    dry = _cli("service", "install", config, "--dry-run", "--user", "inspect")
    assert dry.returncode == 0 and dry.stdout == unit
    # a config in /tmp is hidden from the service by the unit's PrivateTmp=yes: said
    if str(config.resolve()).startswith("/tmp/"):
        assert f"will not see: the config {config.resolve()}" in proc.stderr
        assert f"cam-a's source {(line / 'a.avi').resolve()}" in proc.stderr
    bad = _cli("service", "install", config, "--user", "Bad User", "--unit-dir", tmp_path)
    assert bad.returncode == 2 and "--user must be a system user name" in bad.stderr
    from edgecnn.deploy.service import render_unit

    odd = render_unit(line / "line%h.toml", "inspect", executable="/opt/e/bin/edgecnn")
    assert f"serve {(line / 'line%%h.toml').absolute()}" in odd  # not systemd's %h
    dollar = render_unit(line / "line$HOME.toml", "inspect", executable="/opt/e/bin/edgecnn")
    assert f"ExecStart=/opt/e/bin/edgecnn serve {line.absolute()}/line$$HOME.toml" in dollar
    assert f"Description=edgecnn line-side inspection ({line.absolute()}/line$HOME" in dollar
    with pytest.raises(InputError, match="quotes or backslashes"):
        render_unit(line / 'it"s.toml', "inspect", executable="/opt/e/bin/edgecnn")


def test_the_unit_keeps_the_trusted_keys_the_install_was_checked_under(line, monkeypatch):
    from edgecnn.deploy.service import render_unit
    from edgecnn.deploy.signing import TRUST_ENV

    monkeypatch.delenv(TRUST_ENV, raising=False)
    assert TRUST_ENV not in render_unit(line / "l.toml", "inspect", executable="/opt/edgecnn")
    monkeypatch.chdir(line)
    monkeypatch.setenv(TRUST_ENV, "keys/a.pub:/etc/edgecnn/b.pub")
    unit = render_unit(line / "l.toml", "inspect", executable="/opt/edgecnn")
    assert f"Environment={TRUST_ENV}={line.absolute()}/keys/a.pub:/etc/edgecnn/b.pub\n" in unit


def test_http_table_opens_the_live_view_and_off_loopback_needs_a_token(line, tmp_path):
    path = _config(line, extra='[http]\nlisten = "127.0.0.1:0"\n', name="http.toml")
    assert load_config(path).http == {"listen": "127.0.0.1:0"}
    assert _cli("serve", "--check", path).returncode == 0
    exposed = _config(line, extra='[http]\nlisten = "0.0.0.0:8080"\n', name="open.toml")
    proc = _cli("serve", "--check", exposed)
    assert proc.returncode == 2 and "[http]" in proc.stderr and "token" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_without_paho_one_line_names_the_extra(line, tmp_path):
    no_paho = "import sys; sys.modules['paho'] = None; from edgecnn.cli import main; main()"
    path = _config(line, extra='[mqtt]\nurl = "mqtt://127.0.0.1:1/p"\n', name="mqtt.toml")
    for args in (["serve", "--check", str(path)],
                 ["run", "camera", str(line / "img"), "--source", str(line / "a.avi"),
                  "--mqtt", "mqtt://127.0.0.1:1/p"]):
        proc = subprocess.run([sys.executable, "-c", no_paho, *args], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.strip() == "error: MQTT needs paho-mqtt: pip install 'edgecnn[mqtt]'"


def test_cameras_sharing_a_snapshot_folder_with_other_limits_fail_the_check(line):
    from edgecnn.serve import check

    path = line / "snaps.toml"
    path.write_text(CONFIG.format(recording=RECORDING, camera_extra="snapshots_max_mb = 1\n",
                                  extra="").replace('min_frames = 2\n',
                                                    'min_frames = 2\nsnapshots = "snaps"\n'))
    with pytest.raises(InputError, match=r"\(cam-b\): snapshot folder .*snaps is shared by "
                                         r"cameras with other limits"):
        check(load_config(path))


def test_a_run_wide_key_in_a_camera_table_says_it_belongs_in_run(line):
    path = _config(line, camera_extra='trusted_key = ["a.pub"]\n', name="wide.toml")
    with pytest.raises(InputError, match=r"key 'trusted_key': 'trusted_key' is set for the "
                                         r"whole service: it belongs in \[run\]"):
        load_config(path)
    path = _config(line, camera_extra='log = "x.jsonl"\n', name="wide2.toml")
    with pytest.raises(InputError, match=r"it belongs in \[run\]"):
        load_config(path)


def test_paths_a_private_tmp_hides_from_the_service_are_named(tmp_path):
    from types import SimpleNamespace

    from edgecnn.deploy.service import private_tmp_paths

    video = tmp_path / "a.avi"
    video.write_bytes(b"")
    source = SimpleNamespace(name="cam", source=str(video), snapshots="/var/tmp/shots")
    config = SimpleNamespace(
        path=Path("/etc/edgecnn/line.toml"), trusted_keys=("/tmp/k.pub",),
        logging=SimpleNamespace(log="/var/lib/edgecnn/events.jsonl", sqlite=None,
                                json_path=None),
        sources=[("neu", SimpleNamespace(source=source))])
    hidden = private_tmp_paths(config)
    assert hidden == ["a trusted key /tmp/k.pub", f"cam's source {video.absolute()}",
                      "cam's snapshots /var/tmp/shots"] if str(tmp_path).startswith("/tmp") \
        else hidden[0] == "a trusted key /tmp/k.pub"
    assert not any("neu" in h or "/etc/" in h or "/var/lib" in h for h in hidden)
    # the MQTT spool (events waiting for the broker) and TLS files too
    config.mqtt = SimpleNamespace(spool="/tmp/edgecnn-spool", ca="/var/tmp/ca.pem",
                                  cert=None, key="/var/lib/edgecnn/k.pem")
    hidden = private_tmp_paths(config)
    assert "the MQTT spool /tmp/edgecnn-spool" in hidden and "the MQTT CA /var/tmp/ca.pem" in hidden
    assert not any("k.pem" in h for h in hidden)
