"""A scriptable HTTP/1.1 server on 127.0.0.1 for client tests: real sockets, nothing patched.

Why: what is hard in an HTTP client (deadlines, dripping or silent servers, dropped connections,
redirects, gzip bombs, keep-alive pooling) only shows against a real socket. Each answer is data
(a ``Reply``) or a function of the request, so a test reads as a script. Every wait inside the
server is bounded by its stop event, and leaving the ``with`` block shuts every connection down
and joins every thread, so nothing outlives the test.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, BinaryIO, Self
from urllib.parse import unquote

HANG_LIMIT = 30.0  # a "never answer" reply still gives up after this, should the test forget it
JOIN_LIMIT = 5.0


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    body: Any = b""  # bytes and str are sent as they are; anything else as JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    drip: float = 0.0  # if set, send the body one byte at a time with this pause after each
    drip_headers: bool = False  # with drip: drip the status line and headers as well
    hang: bool = False  # read the request and never answer (until the server stops)
    drop_after: int | None = None  # send this many body bytes, then close the connection
    reset: bool = False  # with drop_after: abort with a TCP RST instead of a clean close
    chunked: bool = False  # Transfer-Encoding: chunked instead of Content-Length
    content_length: int | None = None  # announce this length instead of the real one
    close_delimited: bool = False  # no length at all: the body ends when the connection closes

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


@dataclass(frozen=True)
class Recorded:
    """A request as the server saw it; ``path`` is the raw request target, still escaped."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    client_port: int
    thread: str

    def segments(self) -> list[str]:
        return self.path.split("/")


Responder = Callable[[Recorded], Reply]
Script = Reply | Responder


def job(job_id: str = "j1", workflow_id: str = "w1", **extra: Any) -> dict[str, Any]:
    """A minimal job payload as the API returns it."""
    return {"id": job_id, "workflow_id": workflow_id, "status": "completed", **extra}


def echo_job(request: Recorded) -> Reply:
    """Answer ``/v0/workflows/{w}/jobs/{j}`` with the job that was asked for."""
    parts = request.segments()
    if len(parts) != 6 or parts[1:3] != ["v0", "workflows"] or parts[4] != "jobs":
        return Reply(404, {"error": {"code": "not_found", "message": "no such route"}})
    return Reply(200, job(unquote(parts[5]), unquote(parts[3])))


def error(status: int, code: str, message: str, **headers: str) -> Reply:
    """An error answer in the API's envelope."""
    body = {"error": {"code": code, "message": message, "details": None}}
    return Reply(status, body, headers=headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pooling is exercised
    disable_nagle_algorithm = True  # or sequential requests on loopback crawl at ~40 ms each
    server: _Server

    def do_GET(self) -> None:
        self.server.owner._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests assert on recorded requests, not on stderr."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: ScriptedServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # our own threads, so the owner can shut their sockets down and join them
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="scripted-server-connection",
            daemon=True,
        )
        self.owner._track(request, thread)
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hangs up or the test cuts a connection; report the rest."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class ScriptedServer:
    """``with ScriptedServer() as srv: srv.script(Reply(...), ...); ... srv.url; srv.requests``.

    Replies are taken from the script in order; once it is empty, the default (``srv.always``)
    answers, and without one a 500 ``script_exhausted`` does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._script: deque[Script] = deque()
        self._default: Script | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.requests: list[Recorded] = []
        self._server = _Server(self)
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-server",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Script) -> None:
        with self._lock:
            self._script.extend(replies)

    def always(self, reply: Script) -> None:
        with self._lock:
            self._default = reply

    def __enter__(self) -> Self:
        self._serve_thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()  # ends hangs and drips
        self._server.shutdown()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:  # ends keep-alive connections waiting for a next request
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + JOIN_LIMIT
        for thread in [self._serve_thread, *threads]:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._server.server_close()
        alive = [t for t in [self._serve_thread, *threads] if t.is_alive()]
        if alive and exc_type is None:
            raise RuntimeError(f"{len(alive)} server thread(s) did not stop")

    # -- inside the server ---------------------------------------------------------------------

    def _track(self, sock: socket.socket, thread: threading.Thread) -> None:
        with self._lock:
            self._sockets.append(sock)
            self._threads.append(thread)

    def _handle(self, handler: _Handler) -> None:
        record = Recorded(
            method=handler.command,
            path=handler.path,
            headers={name.lower(): value for name, value in handler.headers.items()},
            client_port=handler.client_address[1],
            thread=threading.current_thread().name,
        )
        with self._lock:
            self.requests.append(record)
            item = self._script.popleft() if self._script else self._default
        if item is None:
            reply = error(500, "script_exhausted", "the test script has no more replies")
        else:
            reply = item if isinstance(item, Reply) else item(record)
        try:
            self._send(handler, reply)
        except OSError:  # the client went away (it gave up, or the test ended): nothing to do
            handler.close_connection = True

    def _send(self, handler: _Handler, reply: Reply) -> None:
        if reply.hang:
            self._stop.wait(HANG_LIMIT)
            handler.close_connection = True
            return
        body = reply.payload()
        wire = _chunked(body) if reply.chunked else body
        head = _head(reply, body)
        out = handler.wfile
        if reply.drip and reply.drip_headers:
            self._drip(out, head + wire, reply.drip)
            handler.close_connection = True
            return
        out.write(head)
        if reply.drip:
            self._drip(out, wire, reply.drip)
            handler.close_connection = True
        elif reply.drop_after is not None:
            out.write(wire[: reply.drop_after])
            handler.close_connection = True
            if reply.reset:
                _abort(handler)
        else:
            out.write(wire)
            handler.close_connection = reply.close_delimited

    def _drip(self, out: BinaryIO, data: bytes, pause: float) -> None:
        for i in range(len(data)):  # bounded by the data and by the stop event
            out.write(data[i : i + 1])
            out.flush()
            if self._stop.wait(pause):
                return


def _head(reply: Reply, body: bytes) -> bytes:
    try:
        phrase = HTTPStatus(reply.status).phrase
    except ValueError:
        phrase = "Unknown"
    headers = dict(reply.headers)
    names = {name.lower() for name in headers}
    if "content-type" not in names and not isinstance(reply.body, bytes | str):
        headers["Content-Type"] = "application/json"
    if reply.chunked:
        headers["Transfer-Encoding"] = "chunked"
    elif reply.close_delimited:
        headers["Connection"] = "close"
    elif "content-length" not in names:
        length = len(body) if reply.content_length is None else reply.content_length
        headers["Content-Length"] = str(length)
    lines = [f"HTTP/1.1 {reply.status} {phrase}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunked(body: bytes, size: int = 8192) -> bytes:
    parts = [
        f"{len(body[i : i + size]):x}\r\n".encode() + body[i : i + size] + b"\r\n"
        for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def _abort(handler: _Handler) -> None:
    """Close with SO_LINGER 0, so the peer sees a connection reset rather than an orderly FIN."""
    sock = handler.connection
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.rfile.close()  # the reader holds a reference to the socket that would delay the close
    sock.close()
    # the handler still flushes and closes its files after us: give it harmless ones
    handler.rfile = io.BytesIO()
    handler.wfile = io.BytesIO()
