"""Column types that behave the same on SQLite, PostgreSQL and MySQL/MariaDB.

Kept apart from the models so migrations can import them without importing the models (a
migration must describe the schema of its own day, not today's models).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, microsecond precision everywhere.

    PostgreSQL stores ``timestamptz``; SQLite and MySQL have no zone, so the value is stored as
    naive UTC and the zone is re-attached on the way out. Naive input is refused: it would be
    ambiguous by the time it reaches an auditor.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
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
