"""The dependency audit of ``.ci/run`` (``.ci/audit.py``): a known vulnerability fails CI, an
audit that cannot run skips visibly and never fails it. pip-audit is replaced by small scripts
that answer as it does, so this runs offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # the CI's audit step runs in a subprocess

AUDIT = Path(__file__).resolve().parent.parent / ".ci" / "audit.py"


def fake_pip_audit(tmp_path: Path, stdout: str, stderr: str = "", status: int = 0) -> str:
    script = tmp_path / "pip-audit"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\nsys.exit({status})\n"
    )
    script.chmod(0o755)
    return str(script)


def audit(tool: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(AUDIT), tool, "/nowhere"], capture_output=True, text=True, timeout=60
    )


def report(*deps: dict) -> str:
    return json.dumps({"dependencies": list(deps), "fixes": []})


def test_a_known_vulnerability_fails_and_is_named(tmp_path: Path) -> None:
    vuln = {"id": "PYSEC-2099-1", "fix_versions": ["2.99.0"], "aliases": [], "description": ""}
    tool = fake_pip_audit(
        tmp_path,
        report(
            {"name": "requests", "version": "2.32.0", "vulns": [vuln]},
            {"name": "click", "version": "8.1.0", "vulns": []},
        ),
        status=1,
    )
    done = audit(tool)
    assert done.returncode == 1
    assert "KNOWN VULNERABILITIES" in done.stdout
    assert "requests 2.32.0: PYSEC-2099-1 (fixed in 2.99.0)" in done.stdout


def test_a_clean_audit_passes_and_lists_what_it_could_not_check(tmp_path: Path) -> None:
    tool = fake_pip_audit(
        tmp_path,
        report(
            {"name": "click", "version": "8.1.0", "vulns": []},
            {"name": "job-archiver", "skip_reason": "Dependency not found on PyPI"},
        ),
    )
    done = audit(tool)
    assert done.returncode == 0
    assert "1 packages, no known vulnerabilities" in done.stdout
    assert "not audited (unknown to the service): job-archiver" in done.stdout


@pytest.mark.parametrize(
    ("stdout", "stderr", "status", "reason"),
    [
        (
            "",
            "requests.exceptions.ConnectionError: Failed to resolve 'api.osv.dev'",
            1,
            "Failed to resolve",
        ),
        (
            report({"name": "click", "skip_reason": "Dependency not found on PyPI"}),
            "",
            0,
            "the vulnerability service knows none of the packages",
        ),
    ],
    ids=["offline", "mirror-knows-nothing"],
)
def test_an_audit_that_cannot_run_skips_visibly_and_passes(
    tmp_path: Path, stdout: str, stderr: str, status: int, reason: str
) -> None:
    done = audit(fake_pip_audit(tmp_path, stdout, stderr, status))
    assert done.returncode == 0
    assert done.stdout.startswith("dependency audit skipped: ") and reason in done.stdout


def test_a_missing_pip_audit_skips_visibly(tmp_path: Path) -> None:
    done = audit(str(tmp_path / "absent"))
    assert done.returncode == 0 and "dependency audit skipped: pip-audit did not run" in done.stdout
