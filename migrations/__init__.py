"""The archive's schema as Alembic revisions; shipped in the package as ``archiver.migrations``."""
