"""Leases: how several ``archiver run`` processes split the due jobs of one database.

A worker claims a batch of due jobs with ``SELECT … FOR UPDATE SKIP LOCKED`` (others skip the rows
it holds instead of waiting), stamps itself as ``lease_owner``, an expiry read from the database's
own clock (workers' clocks may disagree; the database's is the one they share) and a
``claim_token`` that grows on every claim. Everything the worker later writes for that job
re-checks the token under a row lock, so a worker that stalled past its lease, whose job was then
claimed by another, writes nothing at all. An expired lease is simply claimable again.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, Table, select, text, tuple_, update
from sqlalchemy.orm import Session

from archiver.errors import ArchiverError
from archiver.models import TRACKED, WATCH_RULES, WORKFLOWS
from archiver.polling.tracking import POLLED_STATES


class LeaseLost(ArchiverError):
    """Another worker claimed the job after this worker's lease expired; nothing was written."""


@dataclass(frozen=True)
class Claim:
    workflow_id: str
    job_id: str
    token: int | None = None  # None: a single process that needs no lease


def worker_name() -> str:
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{secrets.token_hex(3)}"


_NOW_SQL = {
    "postgresql": "SELECT statement_timestamp()",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "mariadb": "SELECT UTC_TIMESTAMP(6)",
}


def database_now(session: Session) -> datetime:
    """The database server's clock (SQLite has no server: it is this process's clock)."""
    sql = _NOW_SQL.get(session.get_bind().dialect.name)
    if sql is None:
        return datetime.now(UTC)
    value = session.execute(text(sql)).scalar_one()
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def claim(
    session: Session, owner: str, due_before: datetime, limit: int, lease_seconds: float
) -> list[Claim]:
    """Claim up to ``limit`` due jobs that nobody holds a live lease on."""
    now = database_now(session)
    query = (
        select(TRACKED.c.id)
        .where(
            TRACKED.c.state.in_(POLLED_STATES),
            TRACKED.c.next_poll_at <= due_before,
            (TRACKED.c.lease_expires_at.is_(None)) | (TRACKED.c.lease_expires_at < now),
        )
        .order_by(TRACKED.c.next_poll_at, TRACKED.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # SQLite (one writer at a time) renders none
    )
    ids = list(session.scalars(query))
    if not ids:
        return []
    _stamp(session, TRACKED, ids, owner, now + timedelta(seconds=lease_seconds))
    rows = session.execute(
        select(TRACKED.c.workflow_id, TRACKED.c.job_id, TRACKED.c.claim_token)
        .where(TRACKED.c.id.in_(ids))
        .order_by(TRACKED.c.next_poll_at, TRACKED.c.id)
    )
    return [Claim(r.workflow_id, r.job_id, r.claim_token) for r in rows]


def _stamp(session: Session, table: Table, ids: list[int], owner: str, expires: datetime) -> None:
    """Lease the claimed rows (jobs, workflows or rules alike): owner, expiry, a new token."""
    session.execute(
        update(table)
        .where(table.c.id.in_(ids))
        .values(lease_owner=owner, lease_expires_at=expires, claim_token=table.c.claim_token + 1)
    )


def verify(session: Session, held: Claim) -> None:
    """Lock the job's tracking row and make sure the claim still holds; else LeaseLost."""
    lost = verify_many(session, [held])[0]
    if lost is not None:
        raise lost


def verify_many(session: Session, claims: Sequence[Claim]) -> list[LeaseLost | None]:
    """Lock the claims' tracking rows (one query) and check each claim still holds: per claim,
    None, or the LeaseLost that keeps its job out."""
    leased = [c for c in claims if c.token is not None]
    tokens: dict[tuple[str, str], int] = {}
    if leased:
        keys = tuple_(TRACKED.c.workflow_id, TRACKED.c.job_id)
        query = (
            select(TRACKED.c.workflow_id, TRACKED.c.job_id, TRACKED.c.claim_token)
            .where(keys.in_([(c.workflow_id, c.job_id) for c in leased]))
            .order_by(TRACKED.c.workflow_id, TRACKED.c.job_id)
            .with_for_update()
        )
        tokens = {(r.workflow_id, r.job_id): r.claim_token for r in session.execute(query)}
    out: list[LeaseLost | None] = []
    for held in claims:
        current = tokens.get((held.workflow_id, held.job_id))
        if held.token is None or current == held.token:
            out.append(None)
            continue
        out.append(
            LeaseLost(
                f"lease on {held.workflow_id}/{held.job_id} was lost (claim {held.token}, now "
                f"{current}): another worker took it over; this worker wrote nothing for it"
            )
        )
    return out


RELEASED = {"lease_owner": None, "lease_expires_at": None}


def release(session: Session, owner: str) -> int:
    """Give back every lease this worker still holds (a clean stop)."""
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(TRACKED).where(TRACKED.c.lease_owner == owner).values(**RELEASED)
    )
    return int(result.rowcount or 0)


# --- listing leases: each workflow (and each watch-all rule) listed by one worker per interval ---


@dataclass(frozen=True)
class ListingClaim:
    """A workflow id (or a rule's project id) claimed for listing; token None: no lease."""

    key: str
    token: int | None = None


def claim_workflows(
    session: Session, owner: str, listed_before: datetime, limit: int, lease_seconds: float
) -> list[ListingClaim]:
    """Claim up to ``limit`` watched workflows not listed since ``listed_before`` (by any
    worker) that nobody holds a live lease on."""
    return _claim_listing(
        session,
        WORKFLOWS,
        WORKFLOWS.c.workflow_id,
        [WORKFLOWS.c.state == "watched"],
        owner,
        listed_before,
        limit,
        lease_seconds,
    )


def claim_rules(
    session: Session, owner: str, listed_before: datetime, limit: int, lease_seconds: float
) -> list[ListingClaim]:
    """``claim_workflows`` for the active watch-all rules."""
    return _claim_listing(
        session,
        WATCH_RULES,
        WATCH_RULES.c.project_id,
        [WATCH_RULES.c.state == "active"],
        owner,
        listed_before,
        limit,
        lease_seconds,
    )


def _claim_listing(
    session: Session,
    table: Table,
    key: Any,
    where: list[Any],
    owner: str,
    listed_before: datetime,
    limit: int,
    lease_seconds: float,
) -> list[ListingClaim]:
    now = database_now(session)
    query = (
        select(table.c.id)
        .where(
            *where,
            table.c.last_listed_at.is_(None) | (table.c.last_listed_at < listed_before),
            table.c.lease_expires_at.is_(None) | (table.c.lease_expires_at < now),
        )
        .order_by(table.c.last_listed_at, table.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(query))
    if not ids:
        return []
    _stamp(session, table, ids, owner, now + timedelta(seconds=lease_seconds))
    rows = session.execute(
        select(key.label("key"), table.c.claim_token).where(table.c.id.in_(ids)).order_by(key)
    )
    return [ListingClaim(r.key, r.claim_token) for r in rows]


def holds_listing(session: Session, table: Table, key: Any, held: ListingClaim) -> bool:
    """Lock the claimed row and tell whether the claim still holds (always, without a lease)."""
    token = session.execute(
        select(table.c.claim_token).where(key == held.key).with_for_update()
    ).scalar_one_or_none()
    return held.token is None or token == held.token


def listing_done(
    session: Session, table: Table, key: Any, held: ListingClaim, hold_seconds: float | None
) -> None:
    """The claimed listing is over: release the lease, or (``hold_seconds``, after a failure)
    keep it that long from now, so that no other worker tries again within the interval."""
    if held.token is None:
        return
    if hold_seconds is None:
        values: dict[str, Any] = dict(RELEASED)
    else:
        values = {"lease_expires_at": database_now(session) + timedelta(seconds=hold_seconds)}
    session.execute(update(table).where(key == held.key).values(**values))


def listing_released(session: Session, table: Table, key: Any, held: ListingClaim) -> None:
    """Give back a listing claim that was not done, if it is still this claim."""
    if held.token is None:
        return
    session.execute(
        update(table).where(key == held.key, table.c.claim_token == held.token).values(**RELEASED)
    )
