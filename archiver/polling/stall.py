"""A watchdog for database connections that stall: checked out far longer than any statement of
the archiver takes, their sockets are shut down so that the statement fails instead of waiting
for ever.

Why: when the path to the database stops answering without closing the connection (a frozen
server or proxy, a partition that drops packets, a failover that leaves old flows blackholed), a
statement in flight waits indefinitely: psycopg has no client-side read timeout, and a socket
that the other end still acknowledges never trips TCP keepalives. One stuck statement holds the
daemon's pass, and every later pass is skipped. Shutting the socket down makes the driver raise
at once; the pass fails like any database outage, and the next one reconnects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger("archiver.run")


def _socket_of(dbapi_connection: Any) -> socket.socket | None:
    """The connection's socket (a duplicate for psycopg: shutdown acts on the shared socket)."""
    sock = getattr(dbapi_connection, "_sock", None)  # PyMySQL
    if isinstance(sock, socket.socket):
        return sock
    pgconn = getattr(dbapi_connection, "pgconn", None)  # psycopg 3
    if pgconn is not None:
        with contextlib.suppress(Exception):  # a closed connection has no socket
            return socket.socket(fileno=os.dup(pgconn.socket))
    return None


class StallWatchdog:
    """Shut down connections checked out for more than ``limit`` seconds; check every ``every``."""

    def __init__(
        self,
        engine: Engine,
        limit: float,
        every: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._clock = clock  # injectable: a test moves time past the limit without waiting
        self.every = every
        self._lock = threading.Lock()
        # id(DBAPI connection) -> (busy since, the connection)
        self._out: dict[int, tuple[float, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cut = 0
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)
        # the pool pings a connection before its checkout event: a ping that never returns
        # would escape the watch, so the ping is watched too
        ping = engine.dialect.do_ping

        def watched_ping(dbapi_connection: Any) -> bool:
            self._checkout(dbapi_connection)
            try:
                return ping(dbapi_connection)
            finally:
                self._checkin(dbapi_connection)

        setattr(engine.dialect, "do_ping", watched_ping)  # noqa: B010 -- this engine's only

    def _checkout(self, dbapi_connection: Any, *_: Any) -> None:
        with self._lock:
            self._out[id(dbapi_connection)] = (self._clock(), dbapi_connection)

    def _checkin(self, dbapi_connection: Any, *_: Any) -> None:
        with self._lock:
            self._out.pop(id(dbapi_connection), None)

    def check(self) -> int:
        """Cut the stalled connections now; how many were cut."""
        now = self._clock()
        with self._lock:
            stalled = [(k, c) for k, (since, c) in self._out.items() if now - since > self.limit]
            for key, _ in stalled:
                self._out.pop(key, None)
        cut = 0
        for _, connection in stalled:
            sock = _socket_of(connection)
            if sock is None:
                continue  # SQLite: no socket, and nothing to wait on but its own lock
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            if sock is not getattr(connection, "_sock", None):
                sock.close()  # our duplicate only
            cut += 1
        if cut:
            self.cut += cut
            log.error(
                "cut %d database connection(s) stalled for more than %.0fs: the database or "
                "the path to it stopped answering",
                cut,
                self.limit,
                extra={"event": "db_stalled"},
            )
        return cut

    def start(self) -> StallWatchdog:
        def loop() -> None:
            while not self._stop.wait(self.every):
                self.check()

        self._thread = threading.Thread(target=loop, name="archiver-db-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.every + 1)
