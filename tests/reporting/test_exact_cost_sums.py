"""Migration 0003's SQLite arithmetic: sums and differences of int64 costs are exact."""

from __future__ import annotations

import importlib.util
import sqlite3
from contextlib import closing
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from archiver import db

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
EDGES = st.sampled_from([2**63 - 1, -(2**63), 0, 1, -1, 10**9, -(10**9), 10**9 - 1, 1 - 10**9])
COST = INT64 | EDGES


def _revision() -> ModuleType:
    path = db.migrations_path() / "versions" / "0003_cost_sums_without_overflow.py"
    spec = importlib.util.spec_from_file_location("revision_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SQLITE = _revision()._Dialect()


def _fits(value: int) -> bool:
    return -(2**63) <= value < 2**63


def _check(result: int | str, expected: int) -> None:
    """INTEGER when the value fits 64 bits, else the exact decimal text."""
    assert isinstance(result, int) == _fits(expected)
    assert int(result) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(COST, max_size=12))
def test_sqlite_sums_are_exact(costs: list[int]) -> None:
    d = SQLITE
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE TABLE t (cost INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(c,) for c in costs])
        inner = f"SELECT {d.parts('s', [('+', 'cost')], total=True)} FROM t"
        (result,) = conn.execute(f"SELECT {d.value('s')} FROM ({inner}) g").fetchone()
    _check(result, sum(costs))


@settings(max_examples=300, deadline=None)
@given(COST, COST)
def test_sqlite_differences_are_exact(new: int, old: int) -> None:
    d = SQLITE
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE TABLE t (new INTEGER, old INTEGER)")
        conn.execute("INSERT INTO t VALUES (?, ?)", (new, old))
        inner = f"SELECT {d.parts('x', [('+', 'new'), ('-', 'old')])} FROM t"
        (result,) = conn.execute(f"SELECT {d.value('x')} FROM ({inner}) g").fetchone()
    _check(result, new - old)
