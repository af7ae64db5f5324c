"""Benchmarks: each prints its figures with the floor measured in the same run."""
