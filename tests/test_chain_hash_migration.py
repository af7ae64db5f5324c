"""Migration 0012 stores the chain hashes as 32 bytes; what they prove does not change.

The archive of a polled lifecycle is written at head and taken down to 0011: every hash must then
be the 64-character hex text the code before 0012 wrote (so the archive is one that code made),
and ``archiver verify`` clean. Upgraded again, every hash is its 32 bytes, read back as the same
hex, and ``verify`` is still clean; a value that was not a hash before the migration is still
reported after it. Then down once more, to the same hex.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.dialects import sqlite
from test_history_index_migration import archive_lifecycle

from archiver import db
from archiver.audit.verify import verify
from archiver.models import CHANGES, JOB_VERSIONS, SNAPSHOTS, TASK_VERSIONS
from archiver.sqltypes import Digest

pytestmark = pytest.mark.integration  # every test here opens a database

HISTORY = (SNAPSHOTS, JOB_VERSIONS, TASK_VERSIONS, CHANGES)
Stored = dict[tuple[str, int], tuple[object, object]]


def _through_the_model(engine: Engine) -> Stored:
    with engine.connect() as con:
        return {
            (t.name, row.id): (row.prev_sha256, row.row_sha256)
            for t in HISTORY
            for row in con.execute(select(t.c.id, t.c.prev_sha256, t.c.row_sha256))
        }


def _raw(engine: Engine) -> Stored:
    """As the database holds them, without the model's conversion."""
    with engine.connect() as con:
        return {
            (t.name, row[0]): (row[1], row[2])
            for t in HISTORY
            for row in con.execute(text(f"SELECT id, prev_sha256, row_sha256 FROM {t.name}"))
        }


def _hex_in_sql(engine: Engine) -> Stored:
    """The hashes as docs/audit.md tells a user to read them as hex in plain SQL."""
    spell = "encode({}, 'hex')" if engine.dialect.name == "postgresql" else "lower(hex({}))"
    columns = f"{spell.format('prev_sha256')}, {spell.format('row_sha256')}"
    with engine.connect() as con:
        return {
            (t.name, row[0]): (row[1], row[2])
            for t in HISTORY
            for row in con.execute(text(f"SELECT id, {columns} FROM {t.name}"))
        }


def _breaks(engine: Engine) -> list[str]:
    with db.session_factory(engine)() as session:
        report = verify(session)
        assert report.rows > 0
        return [b.line() for b in report.breaks]


def _as_bytes(value: object) -> bytes:
    return bytes(value) if isinstance(value, bytes | memoryview) else b""


def test_0012_stores_32_bytes_and_keeps_every_chain_verifying(empty_db_url: str) -> None:
    db.upgrade(empty_db_url)
    engine = db.make_engine(empty_db_url)
    try:
        archive_lifecycle(engine)
        hashes = _through_the_model(engine)
        assert len(hashes) > 100
        assert all(len(str(h)) == 64 for pair in hashes.values() for h in pair)

        db.downgrade(empty_db_url, "0011")
        engine.dispose()
        assert _raw(engine) == hashes  # the hex text the code before 0012 wrote
        assert _breaks(engine) == []
        # a value no archiver wrote, from before the migration: verify must go on naming it
        with engine.begin() as con:
            forged = con.execute(select(CHANGES.c.id).order_by(CHANGES.c.id.desc())).first()
            assert forged is not None
            con.execute(
                text("UPDATE job_changes SET row_sha256 = 'not-a-hash' WHERE id = :id"),
                {"id": forged.id},
            )
        before = _breaks(engine)
        assert any(f"job_changes row {forged.id} " in b and "edited" in b for b in before), before

        db.upgrade(empty_db_url)
        engine.dispose()
        raw = _raw(engine)
        for key, (prev, row) in hashes.items():
            if key == ("job_changes", forged.id):
                assert _as_bytes(raw[key][1]) != bytes.fromhex(str(row))
                continue
            assert (_as_bytes(raw[key][0]), _as_bytes(raw[key][1])) == (
                bytes.fromhex(str(prev)),
                bytes.fromhex(str(row)),
            ), key
        assert _breaks(engine) == before
        with engine.begin() as con:  # the forged row put back: the chain verifies again
            con.execute(
                update(CHANGES)
                .where(CHANGES.c.id == forged.id)
                .values(row_sha256=hashes[("job_changes", forged.id)][1])
            )
        assert _breaks(engine) == []
        assert _through_the_model(engine) == hashes
        assert _hex_in_sql(engine) == hashes

        db.downgrade(empty_db_url, "0011")
        engine.dispose()
        assert _raw(engine) == hashes
        assert _breaks(engine) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("ab" * 32, bytes.fromhex("ab" * 32)),  # a hash: its 32 bytes
        (bytes(range(32)), bytes(range(32))),  # already bytes: as they are
        ("zz" * 32, b"zz" * 32),  # 64 characters, not hex: its own bytes, never a hash
        ("not-a-hash", b"not-a-hash"),
        ("AB" * 32, b"AB" * 32),  # upper case is not what hashing writes: its own bytes
        ("ab" * 31 + " \n", b"ab" * 31 + b" \n"),  # 64 characters bytes.fromhex would take
        (None, None),
    ],
)
def test_digest_binds_the_hashes_bytes_and_anything_else_as_its_own(
    given: str | bytes | None, stored: bytes | None
) -> None:
    digest = Digest()
    dialect = sqlite.dialect()
    assert digest.process_bind_param(given, dialect) == stored


@pytest.mark.parametrize(
    ("held", "read"),
    [
        (bytes.fromhex("0f" * 32), "0f" * 32),
        (memoryview(bytes.fromhex("0f" * 32)), "0f" * 32),  # some drivers hand a view
        ("text left in a SQLite BLOB column", "text left in a SQLite BLOB column"),
        (None, None),
    ],
)
def test_digest_reads_bytes_as_hex_and_text_as_it_is(
    held: bytes | memoryview | str | None, read: str | None
) -> None:
    assert Digest().process_result_value(held, sqlite.dialect()) == read
