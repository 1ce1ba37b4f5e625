"""The runtime's own web page, JSON API, Prometheus metrics and health probe.

Served by the runtime process itself from the standard library's threaded HTTP server:
``/`` (the page: inline HTML, CSS and script, nothing fetched from elsewhere),
``/api/status``, ``/api/events?since=SEQ``, ``/frame/<source>.jpg`` (the annotated live
frame or spectrogram), ``/snapshot/<seq>`` (an event's snapshot, looked up by event, never
by a path from the request), ``/metrics`` (Prometheus text format), ``/healthz``.

Read-only (GET and HEAD). Bound to 127.0.0.1 by default; any other address needs a token,
which every request must then carry (``Authorization: Bearer T`` or ``?token=T``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import InputError
from .live import LiveHub
from .metrics import prometheus_text
from .page import PAGE


@dataclass(frozen=True)
class HttpOptions:
    """``--http HOST:PORT`` and ``--http-token``: where the live view listens."""

    listen: str = "127.0.0.1:8080"
    token: str | None = None

    def address(self) -> tuple[str, int]:
        host, sep, port = str(self.listen).rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise InputError(f"--http must look like HOST:PORT (e.g. 127.0.0.1:8080); "
                             f"found {self.listen!r}")
        if not _loopback(host) and not self.token:
            raise InputError(f"--http on {host} is reachable from other machines: give a "
                             "token with --http-token (or `token` in the [http] table), "
                             "or listen on 127.0.0.1")
        if not _loopback(host) and len(str(self.token).strip()) < MIN_TOKEN:
            raise InputError(f"--http-token for {host} must be at least {MIN_TOKEN} "
                             f"characters (other machines can guess a short one); found "
                             f"{len(str(self.token).strip())}")
        return host, int(port)


MIN_TOKEN = 12   # a token guarding a page other machines reach


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


REQUEST_TIMEOUT_S = 10.0   # a client silent this long mid-request is cut off
HEADERS_DEADLINE_S = 5.0   # ... and one whose request line and headers take longer in all
                           # (a header line every few seconds would hold a slot forever)
MAX_CONNECTIONS = 32       # open at once; more are closed at once (the page polls, so a
                           # few browsers need a handful; a flood must not take the run's
                           # threads and file descriptors)
MAX_PER_CLIENT = 8         # of them from one address, so one host cannot take them all


class _HeadDeadlines:
    """The request line and headers of every connection must arrive within
    HEADERS_DEADLINE_S: REQUEST_TIMEOUT_S bounds each wait for a byte, not their sum, and
    a client sending one byte every few seconds would hold its slot without end. One
    watchdog thread shuts the socket of a connection past its deadline, so the read
    waiting in its handler returns at once."""

    TICK_S = 0.25

    def __init__(self) -> None:
        self._due: dict = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name="edgecnn-http-deadlines")
        self._thread.start()

    def begin(self, connection) -> None:
        with self._lock:
            self._due[connection] = time.monotonic() + HEADERS_DEADLINE_S

    def end(self, connection) -> None:
        with self._lock:
            self._due.pop(connection, None)

    def close(self) -> None:
        self._closed.set()

    def _watch(self) -> None:
        while not self._closed.wait(self.TICK_S):
            now = time.monotonic()
            with self._lock:
                late = [c for c, due in self._due.items() if due <= now]
                for connection in late:
                    del self._due[connection]
            for connection in late:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-request is the client's business: no traceback in the
    run's journal (socketserver prints one per dropped connection). At most
    MAX_CONNECTIONS are served at once, each for at most REQUEST_TIMEOUT_S of silence."""

    def __init__(self, *args, **kwargs):
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._per_client: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self.refused = 0
        self.heads = _HeadDeadlines()   # closed by server_close, also when binding fails
        super().__init__(*args, **kwargs)

    def server_close(self) -> None:
        self.heads.close()
        super().server_close()

    def _take(self, client: str) -> bool:
        with self._count_lock:
            if self._per_client.get(client, 0) >= MAX_PER_CLIENT:
                return False
            if not self._slots.acquire(blocking=False):
                return False
            self._per_client[client] = self._per_client.get(client, 0) + 1
            return True

    def _give(self, client: str) -> None:
        with self._count_lock:
            left = self._per_client.get(client, 1) - 1
            if left > 0:
                self._per_client[client] = left
            else:
                self._per_client.pop(client, None)
            self._slots.release()

    def process_request(self, request, client_address) -> None:
        client = str(client_address[0])
        if not self._take(client):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._give(client)
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._give(str(client_address[0]))

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _QuietServer6(_QuietServer):
    address_family = socket.AF_INET6


class LiveServer:
    """The HTTP server of a run, in a daemon thread; ``close()`` stops it."""

    def __init__(self, options: HttpOptions, hub: LiveHub):
        host, port = options.address()
        self.hub = hub
        self.token = options.token
        handler = type("Handler", (_Handler,), {"server_state": self})
        server = _QuietServer6 if ":" in host else _QuietServer   # [::1]:8080
        try:
            self.httpd = server((host, port), handler)
        except OSError as exc:
            raise InputError(f"cannot listen on {options.listen}: {exc.strerror}") from None
        self.httpd.daemon_threads = True
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="edgecnn-http")
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server_state: LiveServer
    server_version = "edgecnn"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format, *args) -> None:   # the run's stderr is for the run
        pass

    def setup(self) -> None:
        super().setup()
        self.server.heads.begin(self.connection)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.server.heads.end(self.connection)   # headers in: the answer may take its time
        return parsed

    def finish(self) -> None:
        self.server.heads.end(self.connection)
        super().finish()

    # -- plumbing
    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, status: int = 200) -> None:
        self._send(status, json.dumps(data, default=str).encode(), "application/json")

    def _authorised(self, query: dict) -> bool:
        token = self.server_state.token
        if not token:
            return True
        given = self.headers.get("Authorization", "")
        given = given[7:] if given.startswith("Bearer ") else (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), token.encode())

    def do_POST(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n", "text/plain",
                   {"Allow": "GET, HEAD"})

    do_PUT = do_DELETE = do_PATCH = do_POST

    def do_HEAD(self) -> None:
        self.do_GET()

    def _host_allowed(self) -> bool:
        """Without a token the page is for this machine only: a request whose Host names
        another (a DNS-rebinding page in a local browser) is refused."""
        if self.server_state.token:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        if not host:
            return True            # HTTP/1.0 clients send none
        name = host[1:host.index("]")] if host.startswith("[") and "]" in host \
            else host.rsplit(":", 1)[0]
        return _loopback(name)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not self._host_allowed():
            self._send(HTTPStatus.MISDIRECTED_REQUEST, b"this page answers only to "
                       b"127.0.0.1 / localhost without a token\n", "text/plain")
            return
        if not self._authorised(query):
            self._send(HTTPStatus.UNAUTHORIZED, b"token required\n", "text/plain",
                       {"WWW-Authenticate": "Bearer"})
            return
        hub = self.server_state.hub
        path = parts.path
        try:
            if path in ("/", "/index.html"):
                self._send(200, PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/api/status":
                self._json(hub.status())
            elif path == "/api/events":
                given = (query.get("since") or [""])[0]
                self._json(hub.page(int(given) if given else None))
            elif path == "/healthz":
                self._health(hub)
            elif path == "/metrics":
                self._send(200, prometheus_text(hub).encode(),
                           "text/plain; version=0.0.4; charset=utf-8")
            elif path.startswith("/frame/") and path.endswith(".jpg"):
                self._frame(hub, unquote(path[len("/frame/"):-len(".jpg")]))
            elif path.startswith("/snapshot/"):
                self._snapshot(hub, path[len("/snapshot/"):])
            else:
                self._send(404, b"not found\n", "text/plain")
        except ValueError:
            self._send(400, b"bad request\n", "text/plain")

    # -- routes
    def _health(self, hub: LiveHub) -> None:
        checks = {name: hub.health(name) for name in hub.pipelines}
        ok = all(up for up, _ in checks.values())
        body = {"status": "ok" if ok else "unhealthy",
                "sources": {n: {"up": up, "reason": why} for n, (up, why) in checks.items()}}
        self._json(body, 200 if ok else 503)

    def _frame(self, hub: LiveHub, name: str) -> None:
        preview = hub.previews.get(name)
        if preview is None:
            self._send(404, b"no such source\n", "text/plain")
            return
        data = preview.jpeg()
        if data is None:   # the pipeline hands a frame over at its next frame
            self._send(503, b"no frame yet\n", "text/plain", {"Retry-After": "1"})
            return
        self._send(200, data, "image/jpeg")

    def _snapshot(self, hub: LiveHub, seq: str) -> None:
        if not seq.isdigit():
            raise ValueError(seq)
        event = hub.event(int(seq))
        path = Path(event["snapshot"]) if event and event.get("snapshot") else None
        data = _read_snapshot(path) if path is not None else None
        if data is None:
            self._send(404, b"no snapshot for this event\n", "text/plain")
            return
        self._send(200, data, "image/jpeg")


MAX_SNAPSHOT_BYTES = 64 << 20


def _read_snapshot(path: Path) -> bytes | None:
    """The snapshot file the run wrote, never what a link put in its place (anyone who
    can write to the snapshot folder could point one at another file); None when it is
    gone, not a regular file or larger than any snapshot."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SNAPSHOT_BYTES:
            return None
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            return handle.read(MAX_SNAPSHOT_BYTES + 1)
    finally:
        if fd >= 0:
            os.close(fd)


def page_url(server: LiveServer) -> str:
    """The page's address as it is printed and logged: the token is never written out
    (a service's log is the journal, which more people read than may see the line)."""
    return server.url + ("?token=<the --http-token>" if server.token else "")
