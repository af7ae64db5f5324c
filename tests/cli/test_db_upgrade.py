"""`archiver db upgrade` as a user runs it (a subprocess): the revision it reports is the one the
database is at, and it never goes backwards or guesses at a revision nobody knows (issue 14 #21).
"""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import inspect

from archiver import db
from archiver.config import mask_url

HEAD = db.head_revision()


def upgrade(url: str, *revision: str) -> subprocess.CompletedProcess[str]:
    args = ["--revision", *revision] if revision else []
    return subprocess.run(
        [sys.executable, "-m", "archiver", "db", "upgrade", "--database-url", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def schema(url: str) -> tuple[str | None, dict[str, list[str]]]:
    """The revision and every table's columns: what a refused upgrade must leave as it was."""
    engine = db.make_engine(url)
    try:
        inspector = inspect(engine)
        tables = {
            name: sorted(column["name"] for column in inspector.get_columns(name))
            for name in inspector.get_table_names()
        }
    finally:
        engine.dispose()
    return db.current_revision(url), tables


def test_upgrade_reports_the_revision_reached_not_the_word_head(empty_db_url: str) -> None:
    done = upgrade(empty_db_url, "0002")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"database {mask_url(empty_db_url)} is at revision 0002\n"
    assert db.current_revision(empty_db_url) == "0002"
    done = upgrade(empty_db_url)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"database {mask_url(empty_db_url)} is at revision {HEAD}\n"
    again = upgrade(empty_db_url, "head")  # nothing to do: still says where it is
    assert again.returncode == 0 and again.stdout == done.stdout


def test_upgrade_to_an_older_revision_is_refused_and_changes_nothing(db_url: str) -> None:
    """It printed `is at revision 0001` and exited 0 on an archive at 0005, changing nothing."""
    before = schema(db_url)
    for asked in ("0001", "0004", "base"):
        refused = upgrade(db_url, asked)
        assert refused.returncode == 1, refused
        assert refused.stdout == ""
        assert refused.stderr == (
            f"archiver: error: database {mask_url(db_url)} is at revision {HEAD}, newer than "
            f"the revision asked for, {asked}: upgrade does not downgrade; nothing was changed\n"
        )
        assert schema(db_url) == before


def test_an_unknown_revision_is_one_line_without_a_traceback(db_url: str) -> None:
    before = schema(db_url)
    for asked in ("nope", "0099", "+1"):
        refused = upgrade(db_url, asked)
        assert refused.returncode == 1, refused
        assert refused.stdout == "" and "Traceback" not in refused.stderr
        assert refused.stderr.startswith("archiver: error: ")
        assert refused.stderr.count("\n") == 1
        assert asked in refused.stderr
        assert schema(db_url) == before
    unknown = upgrade(db_url, "nope").stderr
    assert "unknown revision 'nope': the migrations are 0001, 0002" in unknown
