"""Text helpers every layer shares: the one set of invisible characters, and sku/field norms.

Catalog fields (``stages.validate``), review texts (``hygiene``), generated text (``stages.guard``)
and the guardrails' term matching (``guardrails._text``) all remove the same characters. They had
three patterns that disagreed (one kept Unicode tag characters, one kept C0 controls), so a
character stripped from an input could survive in an output check. This module has no pdgen
imports: anything may import it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

# C0/C1 controls other than tab, newline and carriage return; soft hyphen; the Arabic letter mark
# and Mongolian vowel separator; zero-width and bidi controls; word joiners and deprecated format
# characters; BOM; interlinear annotation marks; and Unicode tag characters, which are invisible
# but readable by a model ("ASCII smuggling" of instructions; subdivision-flag emoji lose their
# tags).
INVISIBLE = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u00ad\u061c\u180e"
                       r"\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
                       r"\U000e0000-\U000e007f]")
_WS = re.compile(r"\s+")


def drop_invisible(text: str) -> str:
    """``text`` without the ``INVISIBLE`` characters, otherwise unchanged (no normalisation)."""
    return INVISIBLE.sub("", text)


def strip_invisible(text: str) -> str:
    """``text`` in NFC without control, bidi, zero-width and tag characters (tabs and newlines
    stay). Generated text goes through this too: a model can emit what it read."""
    return drop_invisible(unicodedata.normalize("NFC", text))


def norm_text(value: Any) -> str | None:
    """One clean line of text, or None when nothing is left."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        value = "; ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, ""))
    elif isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value if v not in (None, ""))
    s = unicodedata.normalize("NFC", str(value))
    s = _WS.sub(" ", drop_invisible(s.replace("\u00a0", " "))).strip()
    return s or None


def norm_sku(value: Any) -> str | None:
    """A sku as text: ``42.0`` (a float column) is ``"42"``; NaN and infinities are no sku."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return norm_text(value)


# -- vectorised: which values norm_text leaves as they are ---------------------------------------

# ASCII that ``norm_text`` changes: control characters (``drop_invisible`` removes them, and tab,
# newline and the other ASCII whitespace collapse to a space), runs of spaces, a space at either
# end. RE2 syntax (pyarrow.compute).
_ASCII_NOT_NORMAL = r"[\x00-\x1f\x7f]|  |^ | $"


def normal_mask(values, max_len: int | None = None):
    """A boolean array (pyarrow.compute, no Python per value): True where ``norm_text`` returns
    the value itself: a non-empty string of ASCII without control characters, runs of spaces or
    spaces at its ends (NFC and the invisible set leave ASCII alone), and at most ``max_len``
    characters. False (not null) elsewhere, nulls included: those take the Python path."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return pa.repeat(pa.scalar(False), len(values))  # numbers, bytes, lists: Python
    n = pc.utf8_length(values)
    ok = pc.and_(pc.string_is_ascii(values), pc.greater(n, 0))
    if max_len is not None:
        ok = pc.and_(ok, pc.less_equal(n, max_len))
    ok = pc.and_(ok, pc.invert(pc.match_substring_regex(values, _ASCII_NOT_NORMAL)))
    return pc.fill_null(ok, False)
