"""The daemon's listing metrics count what the pass's listing step reports."""

from __future__ import annotations

from archiver.polling.discovery import ListingSummary
from archiver.polling.metrics import Metrics
from archiver.polling.sync import SyncSummary


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    assert got is not None, name
    return got


def test_a_pass_with_a_listing_moves_the_listing_counters() -> None:
    metrics = Metrics()
    summary = SyncSummary()
    summary.listing = ListingSummary(
        workflows_listed=49, list_failed=1, jobs_discovered=3, jobs_changed=12, bad_items=2
    )
    metrics.observe_pass(summary, 1.0)
    metrics.observe_pass(summary, 1.0)
    assert value(metrics, "archiver_workflow_listings_total", result="ok") == 98
    assert value(metrics, "archiver_workflow_listings_total", result="failed") == 2
    assert value(metrics, "archiver_listed_jobs_total", reason="new") == 6
    assert value(metrics, "archiver_listed_jobs_total", reason="changed") == 24
    assert value(metrics, "archiver_bad_list_items_total") == 4


def test_a_pass_without_listing_leaves_them_at_zero() -> None:
    metrics = Metrics()
    metrics.observe_pass(SyncSummary(), 1.0)
    assert metrics.registry.get_sample_value("archiver_bad_list_items_total") == 0
    assert (
        metrics.registry.get_sample_value("archiver_workflow_listings_total", {"result": "ok"})
        is None
    )
