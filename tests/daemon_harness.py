"""The real daemon (``archiver run``) in a subprocess, its JSON log read as it comes, for the
database-fault and load suites.

Why a subprocess: what these suites prove (the process survives, its memory stays flat, it
answers signals) is about the process, and only a separate one can be measured, killed or starved
without taking the test down with it. Every wait is bounded; ``stop`` always ends the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

LONG = os.environ.get("ARCHIVER_LONG_SUITES") == "1"  # the long variants of issue 7's suites


@dataclass(frozen=True)
class Event:
    at: float  # time.monotonic() when the line arrived
    doc: dict[str, Any]


def archiver_env(db_url: str, api_url: str, key: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")},
        "ARCHIVER_DATABASE_URL": db_url,
        "PIXXEL_API_URL": api_url,
        "PIXXEL_API_KEY": key,
    }


class RunningDaemon:
    """``with RunningDaemon(db_url, api_url, key, interval=2) as d: d.wait_for(...)``."""

    def __init__(
        self, db_url: str, api_url: str, key: str, *, interval: float, extra: tuple[str, ...] = ()
    ) -> None:
        self.interval = interval
        args = [
            sys.executable,
            "-m",
            "archiver",
            "run",
            "--interval",
            str(interval),
            "--poll-interval",
            "0.001",  # every job is due again at every pass
            "--settle-interval",
            "0.001",  # terminal ones too
            "--rate-limit",
            "0",
            "--max-retries",
            "0",
            "--request-deadline",
            "5",
            "--log-format",
            "json",
            *extra,
        ]
        self.events: list[Event] = []
        self.other_lines: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            args,
            env=archiver_env(db_url, api_url, key),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # ends when the process closes stderr
            try:
                doc = json.loads(line)
            except ValueError:
                doc = None
            with self._lock:
                if isinstance(doc, dict):
                    self.events.append(Event(time.monotonic(), doc))
                else:
                    self.other_lines.append(line.rstrip("\n"))

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def passes(self, since: float = 0.0) -> list[Event]:
        """Successful pass lines after ``since``."""
        return [e for e in self.snapshot() if e.at >= since and e.doc.get("event") == "pass"]

    def failures(self, since: float = 0.0) -> list[Event]:
        return [e for e in self.snapshot() if e.at >= since and e.doc.get("event") == "pass_failed"]

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}) {self.tail()}")
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; {self.tail()}")

    def full_pass(self, jobs: int, since: float, timeout: float) -> Event:
        """The first pass after ``since`` that polled every job and failed none."""

        def found() -> Event | None:
            for event in self.passes(since):
                if event.doc.get("due") == jobs and event.doc.get("failed") == 0:
                    return event
            return None

        event: Event = self.wait_for(found, timeout, f"a full pass of {jobs} jobs")
        return event

    def tail(self, n: int = 8) -> str:
        lines = [json.dumps(e.doc) for e in self.snapshot()[-n:]] + self.other_lines[-n:]
        return "daemon log tail:\n" + "\n".join(lines)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL if it does not stop in time; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident set of a process, in KiB (Linux /proc)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def reset_peak(pid: int) -> None:
    """Reset the process's peak RSS (VmHWM) to its current RSS, so the next peak is per pass."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
