"""Column types that behave the same on SQLite, PostgreSQL and MySQL/MariaDB.

Kept apart from the models so migrations can import them without importing the models (a
migration must describe the schema of its own day, not today's models).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer, LargeBinary, Text
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.types import TypeDecorator

# ISO-8601 UTC, always six fraction digits and ``Z``: fixed width, so text order is time order.
SQLITE_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02dT%(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06dZ"
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, microsecond precision everywhere.

    PostgreSQL stores ``timestamptz``; SQLite and MySQL have no zone, so the value is stored as
    UTC and the zone is re-attached on the way out. Naive input is refused: it would be
    ambiguous by the time it reaches an auditor.

    SQLite stores text in the form the tool prints (``SQLITE_FORMAT``), so a time copied from
    the tool's output compares as text with the stored values exactly; reading accepts that
    form and the older ``YYYY-MM-DD HH:MM:SS.ffffff`` (an archive before migration 0007).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        if dialect.name == "sqlite":
            # Read back with fromisoformat, which takes both the new and the old form.
            return dialect.type_descriptor(sqlite.DATETIME(storage_format=SQLITE_FORMAT))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the archive stores aware UTC only")
        value = value.astimezone(UTC)
        if dialect.name != "postgresql":
            value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite via a raw text column or a view
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Surrogate keys: BIGINT where it matters, but SQLite only autoincrements INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

# TEXT on MySQL holds 64 KB; payloads and messages can be megabytes.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")  # what hashing writes; bytes.fromhex would take more


class Digest(TypeDecorator[str]):
    """A SHA-256 stored as its 32 bytes, read and written as the 64-character lowercase hex that
    hashing and ``archiver verify`` compare (half the bytes of hex text, on every row of the four
    history tables; migration 0012).

    BLOB on SQLite, ``bytea`` on PostgreSQL, ``VARBINARY(64)`` on MySQL/MariaDB (room for a value
    the migration found that was not a hash, kept as its own bytes). Only exactly 64 lowercase
    hex characters are taken as a digest; any other text is stored as its own bytes. Whatever is
    stored is read back as the hex of its bytes (or, on SQLite, as the text it is), which equals
    the hash computed for the row only if the row's hash was stored: ``verify`` reports the rest.
    """

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.VARBINARY(64))
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: str | bytes | None, dialect: Dialect) -> bytes | None:
        if value is None or isinstance(value, bytes):  # None, or already the digest's bytes
            return value
        if _HEX_DIGEST.fullmatch(value):
            return bytes.fromhex(value)
        return value.encode("utf-8")  # not a digest's hex: kept as its own bytes

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return bytes(value).hex()
