"""The one rule for workflow, job, task and dependency ids, and how any text echoing one is shown.

Every path that takes an id asks ``id_problem``: ``archiver track`` (one pair or a file), the
payload identification that ``ingest`` and ``sync`` both go through, and the HTTP client before it
builds a path. An id is refused when it is blank, longer than the id columns hold (``ID_MAX``), or
holds a character that is not text one can see:

* control characters: C0 (U+0000 to U+001F), DEL (U+007F), C1 (U+0080 to U+009F) — Unicode ``Cc``;
* the line and paragraph separators U+2028 / U+2029 (``Zl``, ``Zp``): some readers break lines
  at them, so they forge lines as a newline does;
* invisible format characters (``Cf``: zero-width spaces and joiners, soft hyphen, U+FEFF, the
  bidirectional embeddings, overrides and isolates U+202A to U+202E, U+2066 to U+2069): they
  reorder or hide what a line shows, so two different ids could print alike, or an id could
  print as another. Ids are machine-made names; none needs one;
* lone surrogates (``Cs``): not encodable as UTF-8, so no database column or URL can hold them.

``escape`` is for output: whatever was stored before this rule (or any other text: a status, a
file name, a server's message) reaches a terminal or a log with those characters written as
``repr`` writes them (``\\n``, ``\\x1b``, ``\\u2028``), so it can never invent a line.
"""

from __future__ import annotations

import unicodedata

from archiver.fields import ID_MAX

# Unicode categories an id may not hold (see the module docstring for why each)
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
SHOWN_MAX = 100  # an id quoted in a message is cut here, so the message stays one readable line


def _refused(ch: str) -> bool:
    return unicodedata.category(ch) in REFUSED_CATEGORIES


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id (a phrase that follows the id's name), or None if it can."""
    if not value.strip():
        return "is empty"
    if len(value) > ID_MAX:
        return f"is longer than {ID_MAX} characters"
    # str.isprintable is False for every refused character (and for a few allowed ones, such
    # as a no-break space): the common, printable id never reaches the per-character look-up
    if not value.isprintable():
        bad = next((ch for ch in value if _refused(ch)), None)
        if bad is not None:
            return f"contains {_describe(bad)} (U+{ord(bad):04X})"
    return None


def _describe(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Cc":
        return "a control character"
    if category in ("Zl", "Zp"):
        return "a line or paragraph separator"
    if category == "Cs":
        return "a lone surrogate"
    return "an invisible format character"


def shown_id(value: object) -> str:
    """An id as a message quotes it: ``repr``, so every refused character is escaped."""
    text = repr(value)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 1] + "…"


def escape(text: str) -> str:
    """``text`` with every character that is not printable written as ``repr`` writes it.

    For lines written to a terminal, a pipe or a log: a newline, a carriage return, an escape
    sequence or a bidirectional override inside a value cannot start a line of its own or change
    how one reads. Printable text (the usual case) is returned as it is.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
