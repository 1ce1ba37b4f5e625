"""Events to the plant over MQTT, with store-and-forward.

Every event goes as JSON, QoS 1, to ``PREFIX/<source>/events``; a retained
``PREFIX/<source>/status`` says ``online`` (with the source's counters and current faults,
every ``status_interval`` seconds) or ``offline`` (the broker's Last Will when the line PC
vanishes, or our own message when it stops). Each source has its own client (MQTT allows
one Last Will per connection) and its own spool file: an event is on disk before it is
handed to the client and leaves the spool only when the broker has acknowledged it, so a
broker that is down (at start or for a while) loses nothing; the backlog goes out in order
once it is back. paho-mqtt is the optional extra ``edgecnn[mqtt]``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import InputError
from .events import _plain, utc_now
from .shown import shown_url
from .spool import Spool

log = logging.getLogger("edgecnn.mqtt")
URL_FORM = "mqtt://[user:pass@]host:port/PREFIX (or mqtts:// for TLS)"
WINDOW = 20            # messages handed to the client and not yet acknowledged, at most


@dataclass(frozen=True)
class MqttOptions:
    """The ``[mqtt]`` table of a service config; the same names work as query parameters
    of ``--mqtt URL?spool=DIR&ca=FILE``."""

    url: str
    ca: str | None = None              # mqtts: CA bundle that signed the broker's certificate
    cert: str | None = None            # mqtts: client certificate (PEM) ...
    key: str | None = None             # ... and its private key
    spool: str | None = None           # folder of the spool files (default: state directory)
    spool_max: int = 100_000           # events kept per source while the broker is away
    status_interval: float = 5.0       # seconds between status messages
    flush_timeout: float = 10.0        # at the end: wait this long for acknowledgements

    def __post_init__(self) -> None:
        parse_url(self.url)
        if not (0 < self.status_interval < math.inf and 0 <= self.flush_timeout < math.inf) \
                or self.spool_max < 1:
            raise InputError("MQTT status_interval must be > 0, flush_timeout >= 0 and "
                             f"spool_max >= 1; found {self.status_interval}, "
                             f"{self.flush_timeout}, {self.spool_max}")
        if not parse_url(self.url).tls and (self.ca or self.cert or self.key):
            raise InputError("MQTT ca, cert and key are for mqtts:// URLs; found "
                             f"{shown_url(self.url)!r}")
        if (self.cert is None) != (self.key is None):
            raise InputError("MQTT client certificates need both cert and key")
        for name in ("ca", "cert", "key"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise InputError(f"MQTT {name} file {value} not found")
        if parse_url(self.url).tls:
            _check_tls_files(self.ca, self.cert, self.key)

    @property
    def target(self) -> "Target":
        return parse_url(self.url)


@dataclass(frozen=True)
class Target:
    tls: bool
    host: str
    port: int
    username: str | None
    password: str | None
    prefix: str


MAX_PREFIX = 1024   # bytes; MQTT topics end at 65535, and no broker wants them that long


def parse_url(url: str) -> Target:
    """``mqtt[s]://[user:pass@]host[:port]/PREFIX`` (query parameters ignored here)."""
    text = str(url)
    shown = shown_url(text)
    try:
        parts = urlsplit(text)
    except ValueError as exc:   # e.g. an unclosed IPv6 bracket
        raise InputError(f"an MQTT URL must look like {URL_FORM}; found {shown!r} "
                         f"({exc})") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise InputError(f"an MQTT URL must look like {URL_FORM}; found {shown!r}")
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"the port of MQTT URL {shown!r} must be a number in 1-65535") from None
    if not parts.hostname:
        raise InputError(f"MQTT URL {shown!r} names no broker host; expected {URL_FORM}")
    if port == 0:
        raise InputError(f"the port of MQTT URL {shown!r} must be a number in 1-65535")
    prefix = parts.path.strip("/") or "edgecnn"
    if "#" in text:   # urlsplit takes '#...' for a fragment: name the whole path
        prefix = text.split("://", 1)[-1].partition("/")[2].split("?")[0].strip("/")
    if re.search(r"[#+\s]", prefix) or "//" in prefix or "#" in text:
        raise InputError(f"MQTT topic prefix {prefix!r} must not hold '#', '+', blanks "
                         "or empty levels")
    if not prefix.isprintable():   # a NUL: the broker drops every connect as a protocol error
        raise InputError(f"MQTT topic prefix {prefix!r} must not hold control characters")
    if prefix.startswith("$"):
        raise InputError(f"MQTT topic prefix {prefix!r} starts with '$': such topics belong "
                         "to the broker ($SYS), which drops what clients publish there")
    if len(prefix.encode()) > MAX_PREFIX:
        raise InputError(f"MQTT topic prefix is {len(prefix.encode())} bytes; at most "
                         f"{MAX_PREFIX} leave room for the topic levels after it")
    tls = parts.scheme == "mqtts"
    return Target(tls, parts.hostname, port or (8883 if tls else 1883),
                  unquote(parts.username) if parts.username else None,
                  unquote(parts.password) if parts.password else None, prefix)


def _check_tls_files(ca: str | None, cert: str | None, key: str | None) -> None:
    """Load the CA, certificate and key as the TLS connection will, so a wrong file is one
    line at the start (and in ``serve --check``), not a traceback at the first connect."""
    context = ssl.create_default_context()
    for name, load in (("ca", lambda: ca and context.load_verify_locations(cafile=ca)),
                       ("cert/key", lambda: cert and context.load_cert_chain(cert, key))):
        try:
            load()
        except (ssl.SSLError, OSError) as exc:
            given = ca if name == "ca" else f"{cert}, {key}"
            raise InputError(f"MQTT {name} {given}: expected PEM file(s) the TLS connection "
                             f"can load; {getattr(exc, 'strerror', None) or exc}") from None


def options_from_url(url: str) -> MqttOptions:
    """``--mqtt URL``: MqttOptions from the URL and its query parameters."""
    query = dict(parse_qsl(urlsplit(str(url)).query))
    known = {f.name: f for f in fields(MqttOptions) if f.name != "url"}
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise InputError(f"unknown MQTT URL parameter(s) {unknown}; known: {', '.join(known)}")
    values = {}
    for name, text in query.items():
        kind = known[name].type
        try:
            values[name] = int(text) if "int" in kind else float(text) if "float" in kind \
                else text
        except ValueError:
            raise InputError(f"MQTT URL parameter {name} must be a number; found {text!r}") \
                from None
    return MqttOptions(str(url).split("?", 1)[0], **values)


def topic_level(name: str) -> str:
    """A source name as one topic level (and file name): no '/', '+', '#' or blanks."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(name)) or "_"


def default_spool_dir() -> Path:
    state = os.environ.get("STATE_DIRECTORY")   # systemd StateDirectory=
    if state:
        return Path(state.split(":")[0]) / "mqtt-spool"
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "edgecnn" / "mqtt-spool"


def spool_path(folder: Path, prefix: str, level: str) -> Path:
    """One spool per topic prefix and source (``<prefix>--<source>.sqlite``): two lines of
    one PC under other prefixes never share one. A spool of an earlier version
    (``<source>.sqlite``) is taken over: its rows keep the topics they were made for."""
    path = folder / f"{topic_level(prefix)}--{level}.sqlite"
    legacy = folder / f"{level}.sqlite"
    if not path.exists() and legacy.is_file():
        for suffix in ("", "-wal", "-shm"):
            old = legacy.with_name(legacy.name + suffix)
            if old.exists():
                try:
                    old.rename(path.with_name(path.name + suffix))
                except OSError:
                    return legacy
    return path


def require_paho():
    try:
        import paho.mqtt.client as client
    except ImportError:
        raise InputError("MQTT needs paho-mqtt: pip install 'edgecnn[mqtt]'") from None
    return client


class SourcePublisher:
    """One source's client, spool and sending thread."""

    def __init__(self, options: MqttOptions, source: str, status=None):
        mqtt = require_paho()
        target = options.target
        self.options, self.source, self.status_fn = options, source, status
        level = topic_level(source)
        self.events_topic = f"{target.prefix}/{level}/events"
        self.status_topic = f"{target.prefix}/{level}/status"
        spool_dir = Path(options.spool) if options.spool else default_spool_dir()
        self.spool = Spool(spool_path(spool_dir, target.prefix, level), options.spool_max)
        self.published = 0
        self.where = f"{target.host}:{target.port}"
        self._acks: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._drain = False           # after a reconnect: the client resends its own first
        self._closing = False
        self._down_logged = False
        self._unreachable = False     # the last attempt to connect failed
        self._mids: dict[int, int] = {}
        self._cursor = 0
        client_id = f"edgecnn-{socket.gethostname()}-{target.prefix}-{level}"[:200]
        self.client = c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      protocol=mqtt.MQTTv311, clean_session=True)
        if target.username:
            c.username_pw_set(target.username, target.password)
        if target.tls:
            c.tls_set(ca_certs=options.ca, certfile=options.cert, keyfile=options.key)
        c.will_set(self.status_topic, self._status_payload("offline"), qos=1, retain=True)
        c.max_inflight_messages_set(WINDOW)
        c.reconnect_delay_set(0.2, 2.0)
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_connect_fail, c.on_publish = self._on_connect_fail, self._on_publish
        c.connect_async(target.host, target.port, keepalive=10)
        c.loop_start()
        self._thread = threading.Thread(target=self._send_loop, daemon=True,
                                        name=f"mqtt {source}")
        self._thread.start()

    # -- paho callbacks (its network thread)
    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.error("mqtt %s: broker %s refused the connection: %s", self.source,
                      self.where, reason)
            return
        log.info("mqtt %s: connected to %s (%d events spooled)", self.source, self.where,
                 self.spool.pending)
        self._down_logged = self._unreachable = False
        self._drain = True
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._unreachable = True
        if was and not self._closing:
            log.warning("mqtt %s: lost the broker %s (%s); events are spooled in %s",
                        self.source, self.where, reason, self.spool.path)
        elif not was and not self._closing and not self._down_logged:
            self._down_logged = True
            log.warning("mqtt %s: the broker %s closed the connection before accepting it "
                        "(%s; a TLS listener needs mqtts://); events are spooled in %s",
                        self.source, self.where, reason, self.spool.path)

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its ``except OSError``: the reason is the one in flight
        reason = sys.exc_info()[1]
        self._unreachable = True
        if not self._down_logged:
            self._down_logged = True
            if isinstance(reason, ssl.SSLCertVerificationError):
                why = f"TLS: the broker's certificate is not trusted: {reason.verify_message}"
            elif isinstance(reason, ssl.SSLError):
                why = f"TLS handshake failed: {reason.reason or reason}"
            else:
                why = str(reason or "no reason given")
            log.warning("mqtt %s: cannot reach the broker %s (%s); events are spooled in %s "
                        "and sent when it is back", self.source, self.where, why,
                        self.spool.path)

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        self._acks.put(mid)
        self._wake.set()

    # -- the sending thread
    def write(self, event: dict) -> None:
        payload = json.dumps(_plain(event), ensure_ascii=False, separators=(",", ":"))
        self.spool.append(self.events_topic, payload.encode("utf-8"))
        self._wake.set()

    def _take_acks(self) -> None:
        done = []
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            seq = self._mids.pop(mid, None)
            if seq is not None:
                done.append(seq)
        if done:
            self.spool.remove(done)
            self.published += len(done)

    def _send_loop(self) -> None:
        self._next_status = 0.0
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._take_acks()
                if self._closing:
                    return
                self._send()
            except Exception:                # keep sending; the events stay spooled
                log.exception("mqtt %s: sending failed", self.source)
                time.sleep(1.0)

    def _send(self) -> None:
        if not self._connected.is_set():
            return
        if self._drain and self._mids:
            return                           # the client resends what it holds first
        self._drain = False
        if not self._mids:                   # nothing in flight: restart from the spool
            self._cursor = 0
        for seq, topic, payload in self.spool.after(self._cursor, WINDOW - len(self._mids)):
            info = self.client.publish(topic, payload, qos=1)
            self._mids[info.mid] = seq
            self._cursor = seq
        now = time.monotonic()
        if now >= self._next_status:
            self._next_status = now + self.options.status_interval
            self.client.publish(self.status_topic, self._status_payload("online"),
                                qos=1, retain=True)

    def _status_payload(self, state: str) -> bytes:
        status = {"state": state, "time": utc_now(), "source": self.source}
        if self.status_fn is not None:
            for _ in range(3):               # the counters change under us now and then
                try:
                    status.update(self.status_fn())
                    break
                except RuntimeError:
                    continue
        status["mqtt"] = self.counts()
        return json.dumps(_plain(status), separators=(",", ":")).encode("utf-8")

    def counts(self) -> dict:
        counts = {"published": self.published, "pending": self.spool.pending,
                  "dropped": self.spool.dropped}
        if self.spool.failing is not None:      # waiting in memory: the disk refuses it
            counts["spool_failing"] = self.spool.failing
        return counts

    def close(self) -> dict:
        """Wait up to ``flush_timeout`` for the backlog (unless the broker is out of
        reach), say offline, disconnect; the counts. Whatever is not acknowledged stays
        spooled for next time."""
        deadline = time.monotonic() + self.options.flush_timeout
        while self.spool.pending and not self._unreachable and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        self._closing = True
        self._wake.set()
        self._thread.join(5.0)
        counts = self.counts()
        if self._connected.is_set():
            info = self.client.publish(self.status_topic, self._status_payload("offline"),
                                       qos=1, retain=True)
            try:
                info.wait_for_publish(max(1.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self.spool.close()
        return counts


class MqttSinks:
    """The run's MQTT sink (see ``multi.run_many``): one publisher per source."""

    def __init__(self, options: MqttOptions):
        require_paho()
        self.options = options
        self.publishers: dict[str, SourcePublisher] = {}
        self.counts: dict[str, dict] = {}
        self._levels: dict[str, str] = {}    # topic level -> the source publishing there

    def _publisher(self, source: str, status=None) -> SourcePublisher:
        publisher = self.publishers.get(source)
        if publisher is None:
            self._claim(source)
            publisher = self.publishers[source] = SourcePublisher(self.options, source, status)
        return publisher

    def _claim(self, source: str) -> None:
        """Two sources whose names make one topic level would be one MQTT client and one
        spool: refused by name."""
        level = topic_level(source)
        other = self._levels.setdefault(level, source)
        if other != source:
            raise InputError(f"sources {other!r} and {source!r} would publish under the same "
                             f"MQTT topic level {level!r} (one client, one spool): give them "
                             "other names (--source NAME=... or the config's name)")

    def watch(self, loop) -> None:
        """Publish ``loop.status()`` as the source's status, also where its publisher was
        made already (a source down at the start logs ``disconnected`` first). Two sources
        whose names make one topic level are refused (``_claim``)."""
        source = loop.summary.source
        self._claim(source)
        self._publisher(source, loop.status).status_fn = loop.status

    def write(self, event: dict) -> None:
        self._publisher(str(event.get("source"))).write(event)

    def finish(self, summaries) -> None:
        self.close()
        for summary in summaries:
            counts = self.counts.get(summary.source)
            if counts is not None:
                failing = counts.get("spool_failing")
                summary.extra["mqtt"] = (f"published {counts['published']}, pending "
                                         f"{counts['pending']}, dropped {counts['dropped']}"
                                         + (f"; spool failing: {failing}" if failing else ""))

    def close(self) -> None:
        for source, publisher in list(self.publishers.items()):
            self.counts[source] = publisher.close()
            del self.publishers[source]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
