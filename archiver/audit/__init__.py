"""Proving the archive: hash-chain verification, rebuild from snapshots, closed periods."""
