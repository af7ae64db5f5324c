"""A real deadline for a request: a watchdog shuts the request's socket down when it passes.

requests' read timeout is per socket read: a server that drips a byte a second, in the headers or
the body, never trips it. A request therefore runs inside a ``Deadline``; one watchdog thread for
the whole process shuts the sockets of an expired deadline down, which unblocks the worker
whatever it is waiting on. The connections find their deadline through small urllib3 connection
subclasses that register themselves with the deadline of the request running on their thread;
``DeadlineAdapter`` mounts them in a ``requests.Session``. Whoever reads the body also checks
``Deadline.expired`` between chunks (a close-delimited body cut off by the watchdog looks whole).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from typing import Any, Self

import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_active = threading.local()  # .deadline: the Deadline of the request running on this thread


class Deadline:
    """Shuts a request's socket down when its deadline passes, whatever the worker waits on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._expires_at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        self._fired = False
        self._finished = False

    def __enter__(self) -> Self:
        _active.deadline = self
        _WATCHDOG.watch(self._expires_at, self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _active.deadline = None
        with self._lock:  # after this, a late firing can no longer touch the (pooled) socket
            self._finished = True
            self._connections.clear()

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self._expires_at

    def attach(self, conn: HTTPConnection) -> None:
        with self._lock:
            if self._finished:
                return
            if conn not in self._connections:
                self._connections.append(conn)
            if self._fired:
                _shut(conn)

    def _fire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._fired = True
            for conn in self._connections:
                _shut(conn)


class _Watchdog:
    """One thread for every deadline of the process (a thread per request costs more than the
    request itself on loopback). Finished deadlines are dropped when they come due."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._cond = threading.Condition()
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, when: float, deadline: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="archiver-deadlines", daemon=True
                )
                self._thread.start()
            if self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                when, _, deadline = self._heap[0]
                wait = when - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            deadline._fire()


_WATCHDOG = _Watchdog()


def _shut(conn: HTTPConnection) -> None:
    sock = conn.sock
    if sock is None:
        return  # still connecting: the connect timeout bounds that, and attach() shuts it after
    with contextlib.suppress(OSError):  # already closed: nothing left to unblock
        if isinstance(sock, socket.socket):
            # The plain-socket shutdown, for TLS sockets too: SSLSocket.shutdown() would drop its
            # SSL object under the reading thread's feet; this only makes the reader see EOF.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)


def _attach_to_deadline(conn: HTTPConnection) -> None:
    deadline: Deadline | None = getattr(_active, "deadline", None)
    if deadline is not None:
        deadline.attach(conn)


class _HTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _attach_to_deadline(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_to_deadline(self)  # a pooled connection is reused without connect()
        super().request(*args, **kwargs)


class _HTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _attach_to_deadline(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_to_deadline(self)
        super().request(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _use_our_pools(manager: urllib3.PoolManager) -> None:
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with connections that answer to the deadline watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_our_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):  # SOCKS managers keep their own classes
            _use_our_pools(manager)
        return manager
