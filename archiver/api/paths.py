"""Request paths and query strings built from ids, and ids as a message shows them.

Shared by the job fetch (``archiver.api.client``) and the listing endpoints
(``archiver.api.listing``) so both hold every id they send to the one rule (``archiver.ids``) and
escape it the same way: an id is one path segment or one query value whatever it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from archiver.errors import BadRequestError
from archiver.ids import id_problem, shown_id

SHOWN_MAX = 100


def checked(name: str, value: object) -> str:
    """``value`` if it may be sent as an id, else a BadRequestError saying why (nothing is sent)."""
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"{name} must be a non-empty string")
    problem = id_problem(value)
    if problem:
        raise BadRequestError(f"{name} {shown_id(value)} {problem}; not sent")
    return value


def segment(name: str, value: object) -> str:
    """One escaped path segment; ``/``, ``?``, ``#`` and ``%`` inside the id are escaped too."""
    if value in (".", ".."):
        # requests un-escapes %2E and urllib3 then removes dot segments: no way to send these
        raise BadRequestError(f"{name} {value!r} cannot be sent as a path segment")
    # the id rule refused lone surrogates, the only text quote() cannot encode
    return quote(checked(name, value), safe="")


def query(params: Mapping[str, str | int | None]) -> str:
    """``?a=1&b=x%2Fy`` from the parameters that are not None (``""`` when none are)."""
    parts = [
        f"{quote(key, safe='')}={quote(str(value), safe='')}"
        for key, value in params.items()
        if value is not None
    ]
    return "?" + "&".join(parts) if parts else ""


def show(value: object) -> str:
    """An id as it should appear in a message: bare when plain, quoted when it could mislead."""
    if isinstance(value, str) and value.isprintable() and " " not in value and len(value) <= 100:
        return value
    text = repr(value)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 1] + "…"
