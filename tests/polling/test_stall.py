"""The stall watchdog on an injected clock, with socket pairs standing in for database connections:
a connection checked out past the limit is shut, one within it is not, a returned one is
forgotten. No database and no waiting: the engine is never connected."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine

from archiver.polling.stall import StallWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeMySQLConnection:
    """What the watchdog reads of a PyMySQL connection: its ``_sock``."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock


class FakePgConn:
    def __init__(self, fileno: int) -> None:
        self.socket = fileno


class FakePsycopgConnection:
    """What the watchdog reads of a psycopg 3 connection: ``pgconn.socket``, a file number."""

    def __init__(self, sock: socket.socket) -> None:
        self.pgconn = FakePgConn(sock.fileno())


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(our end, the server's end); the server's end never blocks."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def was_shut(theirs: socket.socket) -> bool:
    """The server's end sees end-of-file once our end was shut; otherwise nothing is waiting."""
    try:
        return theirs.recv(1) == b""
    except BlockingIOError:
        return False


def watchdog(clock: Clock, limit: float = 10.0) -> StallWatchdog:
    return StallWatchdog(create_engine("sqlite://"), limit, clock=clock)


def test_a_connection_out_past_the_limit_is_shut(pair: tuple[Any, Any]) -> None:
    ours, theirs = pair
    clock = Clock()
    dog = watchdog(clock)
    dog._checkout(FakeMySQLConnection(ours))
    clock.now = 10.5
    assert dog.check() == 1
    assert was_shut(theirs) and dog.cut == 1
    assert dog.check() == 0  # cut once, then no longer watched


def test_a_connection_within_the_limit_is_left_alone(pair: tuple[Any, Any]) -> None:
    ours, theirs = pair
    clock = Clock()
    dog = watchdog(clock)
    dog._checkout(FakeMySQLConnection(ours))
    clock.now = 10.0  # exactly the limit is not past it
    assert dog.check() == 0
    assert not was_shut(theirs)
    ours.sendall(b"x")
    assert theirs.recv(1) == b"x"  # still a working connection


def test_a_returned_connection_is_forgotten(pair: tuple[Any, Any]) -> None:
    ours, theirs = pair
    clock = Clock()
    dog = watchdog(clock)
    connection = FakeMySQLConnection(ours)
    dog._checkout(connection)
    clock.now = 5.0
    dog._checkin(connection)
    clock.now = 1000.0
    assert dog.check() == 0
    assert not was_shut(theirs) and dog.cut == 0


def test_the_limit_counts_from_the_latest_checkout(pair: tuple[Any, Any]) -> None:
    """A pooled connection checked out again starts a new count: its earlier use is not held
    against it."""
    ours, theirs = pair
    clock = Clock()
    dog = watchdog(clock)
    connection = FakeMySQLConnection(ours)
    dog._checkout(connection)
    clock.now = 8.0
    dog._checkin(connection)
    dog._checkout(connection)
    clock.now = 16.0
    assert dog.check() == 0
    clock.now = 18.5
    assert dog.check() == 1 and was_shut(theirs)


def test_only_the_stalled_one_of_several_is_shut() -> None:
    clock = Clock()
    dog = watchdog(clock)
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        for theirs in (b for _, b in pairs):
            theirs.setblocking(False)
        dog._checkout(FakeMySQLConnection(pairs[0][0]))
        clock.now = 6.0
        dog._checkout(FakeMySQLConnection(pairs[1][0]))
        dog._checkout(FakeMySQLConnection(pairs[2][0]))
        clock.now = 12.0
        assert dog.check() == 1
        assert [was_shut(theirs) for _, theirs in pairs] == [True, False, False]
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_a_psycopg_connection_is_shut_through_a_duplicate(pair: tuple[Any, Any]) -> None:
    """psycopg exposes a file number: the watchdog shuts the shared socket through a duplicate and
    closes only its duplicate, so the driver's own descriptor stays valid."""
    ours, theirs = pair
    clock = Clock()
    dog = watchdog(clock)
    dog._checkout(FakePsycopgConnection(ours))
    clock.now = 11.0
    assert dog.check() == 1
    assert was_shut(theirs)
    assert ours.fileno() != -1  # the driver's descriptor was not closed


def test_a_connection_without_a_socket_is_forgotten_uncounted() -> None:
    """SQLite has no socket to shut: nothing is cut or counted, and it is not checked again."""
    clock = Clock()
    dog = watchdog(clock)
    dog._checkout(object())
    clock.now = 100.0
    assert dog.check() == 0 and dog.cut == 0
    assert dog._out == {}
