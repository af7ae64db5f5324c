"""``archiver simulate`` as a user starts it: its timeline starts at the wall clock (issue 16
item 9: nothing dated in the future, nothing a year stale) and it serves the listing endpoints."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # a subprocess serving on 127.0.0.1

REPO = Path(__file__).resolve().parents[2]


def test_simulate_serves_listings_dated_from_now() -> None:
    launched = datetime.now(UTC)
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver", "simulate", "--port", "0", "--jobs", "6"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"at http://127\.0\.0\.1:(\d+) ", first)
        assert match, first
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=10)

        def get(path: str) -> dict:
            conn.request("GET", path, headers={"Authorization": "sim-key"})
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, body
            return json.loads(body)

        doc = get("/v0/workflows")
        assert doc["pagination"] == {"limit": 50, "offset": 0, "total": 8}
        jobs = [j for w in doc["workflows"] for j in get(f"/v0/workflows/{w['id']}/jobs")["jobs"]]
        now = datetime.now(UTC)
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "served" in err
    assert len(jobs) >= 6
    for job in jobs:
        created = datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
        updated = datetime.fromisoformat(job["updated_at"].replace("Z", "+00:00"))
        assert launched - timedelta(minutes=15) <= created <= updated <= now
