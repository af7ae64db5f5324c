"""Measure the memory ``verify`` costs on one job, in a process of its own.

``python tests/verify_probe.py DATABASE_URL JOB_ID`` verifies a small warm-up job (``warm-up``, so
that imports, pools and statement caches are paid for before the baseline), then job ``JOB_ID``
under ``memory_probe.PeakGrowth``, and prints ``{"growth_mb": ..., "rows": ..., "ok": ...}``. A
separate process for the reason ``memory_probe`` gives: a test process's peak resident set depends
on every test before it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from memory_probe import PeakGrowth

from archiver import db
from archiver.audit.verify import verify


def main(url: str, job_id: str) -> dict[str, Any]:
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    with sessions() as session:
        verify(session, job_id="warm-up")
    with sessions() as session, PeakGrowth() as peak:
        report = verify(session, job_id=job_id)
    engine.dispose()
    breaks = [b.line() for b in report.breaks[:5]]
    return {
        "growth_mb": round(peak.growth_mb, 1),
        "rows": report.rows,
        "ok": report.ok,
        "breaks": breaks,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
