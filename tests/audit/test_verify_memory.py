"""``verify`` holds a bounded number of a job's history rows, however long the history (issue 14,
item 9): it once held all of them, about 3 KB a row (390 MB for 100,000 rows).

The history is built directly (rows chained with ``archiver.archive.chain.Chain``, inserted in
bulk), so that 22,000 rows take seconds; ``verify`` then runs in a subprocess per job
(``tests/verify_probe.py``), and the peak resident growth for a job of 20,000 rows is compared
with that for a job of 2,000: held whole, the ten times longer history cost tens of MB more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import factories
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive.batches import archive_one
from archiver.archive.chain import Chain
from archiver.models import CHANGES, JOBS

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)
PROBE = Path(__file__).parent.parent / "verify_probe.py"
SMALL, BIG = 2_000, 20_000
# held whole, 18,000 more rows cost ~40 MB or more; streamed, the same few thousand are held
MARGIN_MB = 12.0


def grow(sessions: sessionmaker[Session], job_id: str, rows: int) -> None:
    """Archive the job once, then append ``rows`` chained change rows and move its head."""
    archive_one(sessions, factories.job(job_id, tasks=2, val_errors=1), T0)
    with sessions() as session:
        head = session.execute(select(JOBS).where(JOBS.c.job_id == job_id)).mappings().one()
        chain = Chain(head["chain_seq"], head["chain_sha256"])
        batch: list[dict[str, Any]] = []
        for i in range(rows):
            change = {
                "workflow_id": "wf-1",
                "job_id": job_id,
                "task_id": None,
                "entity": "job",
                "entity_key": None,
                "field": "state_note",
                "old_value": f"{i - 1:06d} " + "o" * 300,
                "new_value": f"{i:06d} " + "n" * 300,
                "observed_at": T0 + timedelta(seconds=i + 1),
            }
            batch.append(chain.link("job_changes", change))
            if len(batch) == 2_000:
                session.execute(insert(CHANGES), batch)
                batch = []
        if batch:
            session.execute(insert(CHANGES), batch)
        # the row's bookkeeping follows its history, as archiving would leave it
        last_change = T0 + timedelta(seconds=rows)
        session.execute(
            update(JOBS)
            .where(JOBS.c.job_id == job_id)
            .values(**chain.head_columns(), last_changed_at=last_change)
        )
        session.commit()


def probe(db_url: str, job_id: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(PROBE.parent.parent)}
    done = subprocess.run(
        [sys.executable, str(PROBE), db_url, job_id],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=300,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_verify_memory_does_not_grow_with_a_jobs_history(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    archive_one(sessions, factories.job("warm-up", tasks=2, val_errors=1), T0)
    grow(sessions, "job-small", SMALL)
    grow(sessions, "job-big", BIG)
    small, big = probe(db_url, "job-small"), probe(db_url, "job-big")
    assert small["ok"] and big["ok"], (small, big)
    assert big["rows"] - small["rows"] == BIG - SMALL
    growth = big["growth_mb"] - small["growth_mb"]
    print(f"verify peak growth: {small['growth_mb']} MB ({SMALL}), {big['growth_mb']} MB ({BIG})")
    assert growth < MARGIN_MB, (small, big)
