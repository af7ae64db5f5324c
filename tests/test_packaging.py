"""The package list of pyproject.toml ships every subpackage and the top-level migrations.

A subpackage missing from the explicit list installs fine from a checkout (editable) and is
absent from a wheel: caught here, before a user's ``pip install`` is.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed() -> None:
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "archiver").rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    assert set(CONFIG["packages"]) == found | {
        "archiver.migrations",
        "archiver.migrations.versions",
    }


def test_the_migrations_are_mapped_from_the_top_level_folder() -> None:
    assert CONFIG["package-dir"] == {
        "archiver.migrations": "migrations",
        "archiver.migrations.versions": "migrations/versions",
    }
    assert (ROOT / "migrations" / "env.py").is_file()
    assert "script.py.mako" in CONFIG["package-data"]["archiver.migrations"]
    assert "script_location = %(here)s/migrations" in (ROOT / "alembic.ini").read_text()


def test_the_installed_package_finds_the_same_revisions() -> None:
    from archiver import db

    shipped = sorted(p.name for p in (db.migrations_path() / "versions").glob("0*.py"))
    assert shipped == sorted(p.name for p in (ROOT / "migrations" / "versions").glob("0*.py"))
    assert shipped  # a list that found nothing would pass the comparison vacuously
