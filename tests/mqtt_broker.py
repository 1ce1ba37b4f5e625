"""A real Mosquitto broker for tests: a free 127.0.0.1 port, a generated config, stop and
restart on the same port (with its persistence, like a broker that goes down and comes
back), optional TLS with a test CA made by the openssl CLI, and a persistent subscriber."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                          if Path("/usr/sbin/mosquitto").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_mosquitto():
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (Debian package 'mosquitto'): "
                    "MQTT tests need a real broker")


class Broker:
    def __init__(self, directory: Path, tls: dict | None = None, port: int | None = None):
        need_mosquitto()
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        # as root mosquitto would switch to its own user, who cannot read our tmp files
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}",
                 "allow_anonymous true",
                 "persistence true", f"persistence_location {self.dir}/",
                 "log_dest stderr", "log_type error", "log_type warning"]
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}",
                      f"keyfile {tls['key']}"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read()!r}")
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"


class Subscriber:
    """A persistent session (clean_session False, QoS 1): messages published while it is
    disconnected or while the broker was down reach it after it reconnects."""

    def __init__(self, broker: Broker, topic: str, client_id: str = "test-subscriber",
                 tls_ca: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      clean_session=False)
        if tls_ca:
            c.tls_set(ca_certs=tls_ca)
        c.reconnect_delay_set(0.1, 1.0)
        c.on_connect = lambda cl, u, f, rc, p: (cl.subscribe(topic, qos=1),
                                                self.subscribed.set())
        c.on_message = self._message
        c.connect_async("127.0.0.1", broker.port, keepalive=5)
        c.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("the subscriber could not connect")
        time.sleep(0.2)

    def _message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, json.loads(message.payload), message.retain))

    def payloads(self, suffix: str) -> list[dict]:
        with self.lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return predicate()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_test_ca(directory: Path) -> dict:
    """A CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: TLS tests need it")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def run(*args):
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=edgecnn test CA", "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt")
    return {"ca": str(d / "ca.crt"), "cert": str(d / "server.crt"),
            "key": str(d / "server.key")}
