"""job-archiver: keeps the past of Pixxel workflow jobs in SQL."""

__version__ = "0.1.0"
