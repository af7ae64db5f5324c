"""JSON texts byte-identical to a ``json.JSONEncoder``'s, without its setup on every call.

``JSONEncoder.encode`` builds a new C encoder (nine arguments, a fresh circular-reference dict)
every time it is called; for the small values of the archive path (a task's arrays, a history
row's hash encoding) that setup cost more than the encoding itself. ``fast_encode`` builds the C
encoder once, with the encoder's own options, so the text cannot differ; anything the C encoder
refuses (a circular value, an unserializable one) goes to the encoder itself, which raises the
error ``json`` would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder_module
from typing import Any


def fast_encode(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode``, with the C encoder built once (or ``encoder.encode`` itself where the
    C accelerator is missing or the options are ones it does not take)."""
    make = getattr(_encoder_module, "c_make_encoder", None)
    if (
        make is None
        or encoder.indent is not None
        or type(encoder).default is not json.JSONEncoder.default
    ):
        return encoder.encode
    quote = (
        _encoder_module.encode_basestring_ascii
        if encoder.ensure_ascii
        else _encoder_module.encode_basestring
    )
    # markers=None: no circular-reference bookkeeping (a shared dict would keep a stale entry
    # after an error); a circular value then overflows the C recursion guard, and the fallback
    # raises json's own ValueError for it
    c_encode = make(
        None,
        encoder.default,
        quote,
        encoder.indent,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    slow = encoder.encode
    join = "".join
    between = encoder.item_separator.join
    digits = _DIGITS.__getitem__

    def encode(value: Any) -> str:
        kind = type(value)
        if kind is str:
            return quote(value)
        if kind is list and set(map(type, value)) <= _INT:  # bytes of a document, mostly
            try:
                return "[" + between(map(digits, value)) + "]"
            except KeyError:  # an int beyond the table: the C encoder spells it the same
                pass
        try:
            return join(c_encode(value, 0))
        except (RecursionError, TypeError, ValueError):
            pass
        return slow(value)  # the same text, or json's own error (outside the except: unchained)

    return encode


# The archive's arrays are mostly bytes of documents as lists of small ints, which the C encoder
# spells one ``int.__repr__`` at a time; the same texts looked up are twice as fast. Only exact
# ints (``type(v) is int``: a bool is spelled true/false) are looked up.
_INT = frozenset({int})
_DIGITS = {n: repr(n) for n in range(1024)}

# json.dumps(value) with no options, as SQLAlchemy's JSON type calls it
dumps: Callable[[Any], str] = fast_encode(json.JSONEncoder())
