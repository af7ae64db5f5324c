"""A loopback TCP proxy that a test can cut and restore: a database outage without stopping it.

Cutting closes the listener and every open connection (the archiver's sessions die mid-pass);
restoring listens on the same port again. Every thread is bounded by the proxy's lifetime.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._frozen: set[socket.socket] = set()  # never forwarded again; closed at the end
        self._listener: socket.socket | None = None
        self.port = 0
        self._open()

    def _open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            # the 5 s were for connecting: left on, they closed every connection idle for 5 s
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if src in self._frozen or dst in self._frozen:
                    continue  # swallowed: the other end waits for an answer that never comes
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and kill the open ones."""
        with self._lock:
            if self._listener is not None:
                # close() alone does not wake a thread blocked in accept(): it would go on
                # accepting on the closed socket; shutdown() does
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            conns, self._conns = self._conns, []
            conns += list(self._frozen)
            self._frozen.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def freeze(self) -> None:
        """Stop answering without closing anything: open connections stay open and silent for
        good (a blackholed path), and new ones are refused until ``restore``."""
        with self._lock:
            conns, self._conns = self._conns, []
            self._frozen.update(conns)
            if self._listener is not None:
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None

    def restore(self) -> None:
        with self._lock:
            if self._listener is None:
                self._open()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cut()
