"""Dependency audit for CI: known vulnerabilities in the installed environment, or a visible skip.

Usage: ``python .ci/audit.py PIP_AUDIT SITE_PACKAGES`` (pip-audit lives in its own virtualenv so
it does not change the environment it audits). The policy, also in docs/reliability.md:

* a known vulnerability in an installed package fails CI (exit 1) and is printed in full: a
  release must not ship it, and the fix is a version bump in pyproject.toml;
* an audit that cannot run (no network, the vulnerability service unreachable, or not one
  package found by it, as behind a registry mirror) never fails CI: it prints
  ``dependency audit skipped: <reason>`` and exits 0;
* packages the service does not know (this project itself, for one) are listed as not audited.
"""

from __future__ import annotations

import json
import subprocess
import sys


def main(pip_audit: str, site_packages: str) -> int:
    try:
        done = subprocess.run(  # noqa: S603 -- CI's own tool path, from .ci/run
            [pip_audit, "--path", site_packages, "--progress-spinner", "off", "-f", "json"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return skipped(f"pip-audit did not run: {exc}")
    try:
        report = json.loads(done.stdout)
    except ValueError:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return skipped(lines[-1][:300] if lines else f"pip-audit exited {done.returncode}")
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    if vulnerable:
        print("!!! KNOWN VULNERABILITIES IN THE INSTALLED DEPENDENCIES !!!")
        for dep in vulnerable:
            for vuln in dep["vulns"]:
                fixed = ", ".join(vuln.get("fix_versions") or []) or "none yet"
                print(f"  {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})")
        return 1
    if not audited:
        reason = dependencies[0]["skip_reason"] if dependencies else "no packages found"
        return skipped(f"the vulnerability service knows none of the packages ({reason})")
    print(f"dependency audit: {len(audited)} packages, no known vulnerabilities")
    not_audited = sorted(d["name"] for d in dependencies if "skip_reason" in d)
    if not_audited:
        print(f"  not audited (unknown to the service): {', '.join(not_audited)}")
    return 0


def skipped(reason: str) -> int:
    print(f"dependency audit skipped: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
