"""What people read (terminal, journal, summaries): a URL's password never, a name's
newline or terminal escape only as an escape."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys

from edgecnn.deploy.run import format_event
from edgecnn.deploy.shown import one_line, shown, shown_url
from edgecnn.serve import JournalFormatter

EDGECNN = [sys.executable, "-c", "from edgecnn.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_urls_lose_their_userinfo_and_lines_their_control_characters():
    assert shown_url("rtsp://admin:S3cret@10.0.0.21:554/s1") == "rtsp://***@10.0.0.21:554/s1"
    assert shown_url("two rtsp://a:b@h/x and http://c@h/y") == \
        "two rtsp://***@h/x and http://***@h/y"
    assert shown_url("rtsp://10.0.0.21/stream@1 x@y") == "rtsp://***@1 x@y"   # never less
    assert one_line("a\nb\x1b[31m\x9b") == "a\\nb\\x1b[31m\\x9b"
    event = {"time": "t", "type": "fault", "fault": "disconnected", "frame": 0,
             "source": "v\n2026-01-01  FAKE 1.000", "detail": "cannot open rtsp://u:pw@h/x"}
    line = format_event(event, source=True)
    assert "\n" not in line and "pw" not in line and "rtsp://***@h/x" in line
    record = logging.LogRecord("edgecnn.serve", logging.INFO, __file__, 1,
                               "source %s", ("x\n<2>edgecnn: FORGED rtsp://u:pw@h",), None)
    for journal in (True, False):
        text = JournalFormatter(journal).format(record)
        assert "\n" not in text and "pw" not in text and "FORGED" in text


def test_a_camera_url_password_stays_out_of_errors_and_summaries(tmp_path):
    url = f"rtsp://admin:S3cretPass@127.0.0.1:{_free_port()}/stream"
    result = subprocess.run([*EDGECNN, "run", "camera", "neu", "--source", url,
                             "--connect-timeout", "0.5", "--quiet"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "S3cretPass" not in result.stderr + result.stdout
    assert "rtsp://***@127.0.0.1" in result.stderr
    config = tmp_path / "line.toml"
    config.write_text(f'[[camera]]\nname = "door"\nbundle = "neu"\nsource = "{url}"\n')
    checked = subprocess.run([*EDGECNN, "serve", "--check", str(config)], capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "S3cretPass" not in checked.stdout + checked.stderr
    assert "rtsp://***@127.0.0.1" in checked.stdout
    assert shown(url) == shown_url(url)
