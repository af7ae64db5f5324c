"""A pass's failures: whose fault each is (the job's, or the API's settings), and their summary.

A wrong ``PIXXEL_API_URL`` or an unreachable API fails every job of a pass the same way, and no
job can cause it: no connection at all (refused, DNS lookup failed, connect timed out), or a 400
or 404 that is not the API's JSON error envelope (a web server's HTML page, say: what a wrong
base URL gives). ``FirstRequests`` watches the first answers of a pass: when the first
``FIRST_REQUESTS`` (or all of them, when fewer) all fail one such way, the pass stops, like it
does for a rejected key, and none of those failures counts against its job (no backoff, no
failure count, no pause). A single answer that is a job's own (a success, the API's JSON
``not_found`` for a job it does not know, a timeout after connecting) settles the pass as a
normal one, and its failures count as they always did.
"""

from __future__ import annotations

from collections import Counter

from archiver.errors import ApiError, BadRequestError, NotFoundError, TransportError

FIRST_REQUESTS = 5
NO_ENVELOPE = "without the API's error envelope"


def api_fault(exc: Exception) -> str | None:
    """The settings' fault behind ``exc`` in a few words (``connection refused``), or None when
    the failure may be the job's own."""
    if isinstance(exc, TransportError) and not exc.connected:
        return exc.cause
    # the API answers its errors in its JSON envelope; a bare 400 or 404 is someone else's
    bare = isinstance(exc, BadRequestError | NotFoundError) and exc.code is None
    if bare and isinstance(exc, ApiError) and exc.status in (400, 404):
        return f"{exc.status} {NO_ENVELOPE}"
    return None


def cause(exc: Exception) -> str | None:
    """What a summary shows beside a failure's reason: the transport's cause, or a status that
    did not come from the API; None where the reason says it all."""
    if isinstance(exc, TransportError):
        return exc.cause
    return api_fault(exc) if isinstance(exc, ApiError) else None


class FirstRequests:
    """The verdict on a pass's first answers. Only the pass's own thread calls it.

    ``open`` until the verdict; ``fault`` is then the settings' fault every one of the first
    answers showed, or None for a normal pass.
    """

    def __init__(self, size: int = FIRST_REQUESTS) -> None:
        self.size = size
        self.open = True
        self.fault: str | None = None
        self.count = 0
        self._seen: list[str] = []

    def answered(self) -> None:
        """An answer that is a job's own (a success, a job's failure): a normal pass."""
        self.open = False

    def failed(self, fault: str | None) -> None:
        if not self.open:
            return
        if fault is None or (self._seen and fault != self._seen[0]):
            self.open = False  # a job's failure, or the first answers differ: not the settings
            return
        self._seen.append(fault)
        if len(self._seen) >= self.size:
            self._decide()

    def finished(self) -> None:
        """The pass has no more answers: fewer than ``size`` that all failed alike decide."""
        if self.open and self._seen:
            self._decide()
        self.open = False

    def _decide(self) -> None:
        self.open = False
        self.fault = self._seen[0]
        self.count = len(self._seen)


def grouped(failures: dict[str, Counter[str]]) -> str:
    """``failed 12: transport 10 (connection refused), not_found 2``: failures by reason, the
    largest first, with the causes behind a reason when there are any."""
    total = sum(sum(c.values()) for c in failures.values())
    parts = []
    for reason, causes in sorted(failures.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])):
        named = [(c, n) for c, n in causes.most_common() if c]
        shown = ""
        if len(named) == 1 and named[0][1] == sum(causes.values()):
            shown = f" ({named[0][0]})"
        elif named:
            shown = " (" + ", ".join(f"{c} {n}" for c, n in named) + ")"
        parts.append(f"{reason} {sum(causes.values())}{shown}")
    return f"failed {total}: " + ", ".join(parts)


def unusable_message(fault: str, count: int, api_url: str) -> str:
    """One message for a pass stopped by ``FirstRequests``: the cause and the setting to check."""
    first = f"the first {count} requests" if count > 1 else "the first request"
    if NO_ENVELOPE in fault:
        what = f"answered {fault}: {api_url} does not look like the jobs API"
    else:
        what = f"failed ({fault}): the API at {api_url} cannot be reached"
    return (
        f"{first} of the pass {what}. Check PIXXEL_API_URL (or --api-url); the pass was "
        "stopped and no job was counted as failed."
    )
