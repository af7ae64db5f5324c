"""``archiver report html``: the page holds the right bars, draws in a real browser, fetches
nothing, and escapes what the API sent.

The data is the scripted archive of ``report_archive.py`` (see its timeline). The browser tests
run Debian's ``chromium`` headless; without it they skip, except in CI
(``ARCHIVER_REQUIRE_ALL_DATABASES=1``, set by ``.ci/run``, which installs it), where they fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import factories
import pytest
from click.testing import CliRunner
from conftest import REQUIRE_ALL
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive.batches import archive_one
from archiver.cli import cli
from archiver.reporting import html_report


class Page(HTMLParser):
    """The bars (``rect.bar``) of each chart, every script, image and element with a source."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.chart: str | None = None
        self.bars: dict[str, list[tuple[str | None, str | None, int]]] = {}
        self.tags: list[str] = []
        self.sources: list[str] = []
        self.layout: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.sources += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "action")]
        if tag == "html" and "data-layout" in a:
            self.layout = a["data-layout"]
        if tag == "svg":
            self.chart = a.get("data-chart")
            self.bars.setdefault(self.chart or "", [])
        if tag == "rect" and "bar" in (a.get("class") or "").split() and self.chart:
            value = int(a["data-value"] or "0")
            self.bars[self.chart].append((a.get("data-category"), a.get("data-series"), value))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def write_page(url: str, path: Path, *more: str) -> str:
    code, _out, err = run("report", "html", "-o", str(path), "--database-url", url, *more)
    assert code == 0, err
    return path.read_text(encoding="utf-8")


COST_BARS = [("2026-10-01", "wf-a", 570), ("2026-10-02", "wf-b", 90)]
STATUS_BARS = [
    ("2026-10-01", "succeeded", 1),  # job-1 completed
    ("2026-10-01", "failed", 1),  # job-2 failed
    ("2026-10-02", "queued", 1),  # job-4
    ("2026-10-02", "running", 1),  # job-3, first seen 23:45
    ("2026-10-02", "succeeded", 1),
    ("2026-10-02", "failed", 1),
    ("2026-10-03", "queued", 1),
    ("2026-10-03", "running", 1),  # its tasks failed, the job still runs
    ("2026-10-03", "succeeded", 1),
    ("2026-10-03", "failed", 1),
]
FAILURE_BARS = [("tiler@2.0", None, 2), ("mosaic@0.9", None, 1)]


def test_the_page_holds_the_reports_numbers(report_archive_url: str, tmp_path: Path) -> None:
    page = Page(write_page(report_archive_url, tmp_path / "report.html"))
    assert page.bars == {"cost": COST_BARS, "status": STATUS_BARS, "failures": FAILURE_BARS}
    assert page.sources == [] and "script" in page.tags and "img" not in page.tags


def test_since_and_until_keep_the_jobs_created_in_between(
    report_archive_url: str, tmp_path: Path
) -> None:
    text = write_page(
        report_archive_url, tmp_path / "r.html", "--since", "2026-10-02", "--until", "2026-10-03"
    )
    page = Page(text)
    assert page.bars["cost"] == [("2026-10-02", "wf-b", 90)]
    assert page.bars["status"] == [("2026-10-02", "running", 1), ("2026-10-03", "running", 1)]
    assert page.bars["failures"] == [("mosaic@0.9", None, 1), ("tiler@2.0", None, 1)]
    assert "jobs created from 2026-10-02T00:00:00+00:00 before 2026-10-03T00:00:00+00:00: 1" in text


def test_report_html_options(report_archive_url: str) -> None:
    url = ("--database-url", report_archive_url)
    code, out, _ = run("report", "html", "-o", "-", *url)
    assert code == 0 and out.startswith("<!DOCTYPE html>") and out.endswith("</html>\n")
    code, _, err = run("report", "html", *url)
    assert code == 2 and "--output" in err
    code, _, err = run(
        "report", "html", "-o", "-", "--since", "2026-10-02", "--until", "2026-10-01"
    )
    assert code == 2 and "before --until" in err


# --- in a real browser ---------------------------------------------------------------------------


def chromium() -> str:
    found = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
    )
    if found is None:
        reason = "the browser tests need Debian's chromium (bash .ci/run installs it)"
        if REQUIRE_ALL:
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def browse(path: Path, *flags: str) -> Page:
    """The DOM after the page's script ran, with every request sent to a dead proxy."""
    command = [
        chromium(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        f"--user-data-dir={path.parent / 'chromium-profile'}",
        "--proxy-server=127.0.0.1:1",  # a fetch that the policy let through would fail
        "--virtual-time-budget=2000",
        *(flags or ["--dump-dom"]),
        path.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return Page(done.stdout)


def layout(page: Page) -> dict:
    assert page.layout is not None, "the page's script did not run"
    return json.loads(page.layout)


def test_a_browser_draws_every_bar_and_fetches_nothing(
    report_archive_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "report.html"
    write_page(report_archive_url, path)
    page = browse(path)
    assert page.bars == {"cost": COST_BARS, "status": STATUS_BARS, "failures": FAILURE_BARS}
    facts = layout(page)
    assert facts["violations"] == []
    for chart, bars in page.bars.items():
        drawn = facts["charts"][chart]
        assert drawn["bars"] == drawn["drawn"] == len(bars), chart
        assert drawn["width"] > 300 and drawn["height"] > 50, chart
    shot = tmp_path / "report.png"
    browse(path, f"--screenshot={shot}", "--window-size=1000,1400", "--hide-scrollbars")
    assert shot.stat().st_size > 10_000  # a blank page is a few hundred bytes


def test_the_browser_check_would_see_a_fetch(report_archive_url: str, tmp_path: Path) -> None:
    """The check above is not vacuous: a page that tries to fetch records a violation."""
    path = tmp_path / "fetching.html"
    text = write_page(report_archive_url, path)
    path.write_text(text.replace("<body>", '<body><img src="http://192.0.2.1/x.png">'))
    violations = layout(browse(path))["violations"]
    assert [v for v in violations if "192.0.2.1" in v], violations


HOSTILE_WF = "<script>alert('wf')</script>"
HOSTILE_BLOCK = {"id": "b", "name": '<img src=x onerror="alert(1)">', "version": "1&2</svg>"}


def test_text_from_the_api_is_escaped(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    body = factories.job("job-x", HOSTILE_WF, tasks=1, cost=-(2**63))
    body["tasks"][0].update(status="failed", block_info=HOSTILE_BLOCK)
    archive_one(sessions, body, datetime(2026, 10, 1, 10, tzinfo=UTC))
    with sessions() as session:
        text = html_report.build_page(session)
    assert "<script>alert" not in text and "<img" not in text and "1&2</svg>" not in text
    path = tmp_path / "hostile.html"
    path.write_text(text, encoding="utf-8")
    page = browse(path)
    assert page.tags.count("script") == 1 and "img" not in page.tags
    assert page.bars["cost"] == [("2026-10-01", HOSTILE_WF, -(2**63))]
    assert page.bars["failures"] == [(f"{HOSTILE_BLOCK['name']}@1&2</svg>", None, 1)]
    facts = layout(page)
    assert facts["violations"] == []
    assert facts["charts"]["cost"]["drawn"] == 1  # a negative cost is drawn below the axis
    assert "-9,223,372,036,854,775,808" in text  # exact, not a float
