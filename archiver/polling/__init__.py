"""Keeping the archive current: tracked jobs, leases, the sync pass and the daemon."""
