"""Status classes: the API's free-form status kept verbatim, plus a class reports can group by.

The class drives the polling policy (terminal jobs settle) and reports (``failed`` jobs), so an
unknown status is never guessed into a class: it stays ``unknown`` and non-terminal, and is reported
as a parse problem until someone maps it with ``ARCHIVER_STATUS_MAP``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from archiver.errors import ConfigError

CLASSES = ("queued", "running", "succeeded", "failed", "cancelled", "unknown")
TERMINAL_CLASSES = frozenset({"succeeded", "failed", "cancelled"})

DEFAULT_STATUS_MAP: dict[str, str] = {
    **dict.fromkeys(
        ("queued", "pending", "created", "scheduled", "waiting", "submitted", "accepted", "new"),
        "queued",
    ),
    **dict.fromkeys(
        ("running", "in_progress", "processing", "started", "active", "executing", "retrying"),
        "running",
    ),
    **dict.fromkeys(
        ("completed", "complete", "succeeded", "success", "successful", "done", "finished"),
        "succeeded",
    ),
    **dict.fromkeys(
        ("failed", "failure", "error", "errored", "timeout", "timed_out", "rejected"), "failed"
    ),
    **dict.fromkeys(
        ("cancelled", "canceled", "aborted", "killed", "stopped", "revoked"), "cancelled"
    ),
}

_SEPARATORS = re.compile(r"[\s\-]+")


def normalize(status: str) -> str:
    """``" In-Progress "`` -> ``"in_progress"``: the key mappings are written in."""
    return _SEPARATORS.sub("_", status.strip().lower())


@dataclass(frozen=True)
class StatusClassifier:
    mapping: Mapping[str, str]

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, str] | None = None) -> StatusClassifier:
        mapping = dict(DEFAULT_STATUS_MAP)
        for raw, klass in (overrides or {}).items():
            klass = normalize(klass)
            if klass not in CLASSES:
                raise ConfigError(
                    f"status class {klass!r} for {raw!r} is not one of {', '.join(CLASSES)}"
                )
            mapping[normalize(raw)] = klass
        return cls(mapping)

    def classify(self, status: str | None) -> str | None:
        """The class of a status; None for no status, ``unknown`` for an unmapped one."""
        if status is None or not status.strip():
            return None
        return self.mapping.get(normalize(status), "unknown")

    @staticmethod
    def is_terminal(status_class: str | None) -> bool | None:
        return None if status_class is None else status_class in TERMINAL_CLASSES


DEFAULT_CLASSIFIER = StatusClassifier.with_overrides()
