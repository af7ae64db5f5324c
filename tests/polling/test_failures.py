"""Whose fault a failure is, the verdict on a pass's first answers, and the grouped summary."""

from __future__ import annotations

from collections import Counter

import pytest

from archiver.errors import (
    ApiError,
    BadRequestError,
    NotFoundError,
    ServerError,
    TransportError,
)
from archiver.polling import failures
from archiver.polling.failures import FirstRequests

REFUSED = TransportError("x", cause="connection refused", connected=False)


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (REFUSED, "connection refused"),
        (TransportError("x", cause="DNS lookup failed", connected=False), "DNS lookup failed"),
        (TransportError("x", cause="read timed out"), None),  # connected: may be the job's
        (NotFoundError("x", status=404), "404 without the API's error envelope"),
        (BadRequestError("x", status=400), "400 without the API's error envelope"),
        (NotFoundError("x", status=404, code="not_found"), None),  # the API's own answer
        (BadRequestError("refused before sending"), None),  # no status: our own refusal
        (ServerError("x", status=500), None),
    ],
)
def test_api_fault(exc: ApiError, fault: str | None) -> None:
    assert failures.api_fault(exc) == fault


@pytest.mark.parametrize(
    ("answers", "fault"),
    [
        (["refused"] * 5, "refused"),
        (["refused"] * 4 + [None], None),  # one job's own answer settles a normal pass
        (["refused"] * 2 + ["404"] * 3, None),  # the first answers differ
        (["refused"] * 2, "refused"),  # fewer jobs than five: all of them decide
        ([], None),
    ],
)
def test_first_requests_verdict(answers: list[str | None], fault: str | None) -> None:
    first = FirstRequests(size=5)
    for answer in answers:
        first.failed(answer)
    first.finished()
    assert (first.open, first.fault) == (False, fault)


def test_a_success_first_settles_a_normal_pass() -> None:
    first = FirstRequests(size=2)
    first.answered()
    first.failed("refused")
    first.failed("refused")
    assert first.fault is None


def test_grouped_largest_first_with_causes() -> None:
    grouped = failures.grouped(
        {
            "not_found": Counter({"": 2}),
            "transport": Counter({"connection refused": 8, "read timed out": 2}),
            "auth": Counter({"": 1}),
        }
    )
    assert grouped == (
        "failed 13: transport 10 (connection refused 8, read timed out 2), not_found 2, auth 1"
    )
    assert failures.grouped({"transport": Counter({"connection refused": 3})}) == (
        "failed 3: transport 3 (connection refused)"
    )
