"""Text helpers shared by the checks: normalisation, tokens, scripts and word-bounded terms.

A "word boundary" here means "no Latin letter or digit on that side". Python's ``\\b`` treats CJK
characters as word characters, so ``\\bNike\\b`` would miss "这款Nike跑鞋"; these helpers do not.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from pdgen_core.text import drop_invisible

_LATIN = "0-9A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA = "\u3040-\u30ff"
# One token = a run of Latin letters/digits, one CJK character, one kana, or a run of other letters.
_TOKEN = re.compile(rf"[{_LATIN}]+|[{_CJK}]|[{_KANA}]|[^\W\d_{_LATIN}{_CJK}{_KANA}]+")
_LATIN_CHAR = re.compile(rf"[{_LATIN}]")
_CJK_CHAR = re.compile(rf"[{_CJK}]")


def normalise(text: str) -> str:
    """NFKC (fullwidth letters become ASCII) without invisible characters, so that "ｆｒｅｅ" or
    "f\u200bree" cannot slip past a term check."""
    return drop_invisible(unicodedata.normalize("NFKC", text))


def tokens(text: str) -> list[str]:
    """Lower-cased tokens: Latin words, single CJK characters and runs of other letters."""
    return [t.lower() for t in _TOKEN.findall(text)]


def script_of(token: str) -> str:
    """``latin``, ``cjk``, ``kana``, ``digit`` or ``other`` for one token from ``tokens``."""
    if token.isdigit():
        return "digit"
    if _CJK_CHAR.match(token):
        return "cjk"
    if "\u3040" <= token[0] <= "\u30ff":
        return "kana"
    return "latin" if _LATIN_CHAR.match(token) else "other"


@lru_cache(maxsize=4096)
def term_pattern(term: str) -> re.Pattern[str] | None:
    """A case-insensitive pattern for ``term`` with Latin word boundaries where the term has a
    Latin edge, and any whitespace between its words. ``None`` for a blank term."""
    words = normalise(term).split()
    if not words:
        return None
    body = r"\s+".join(re.escape(w) for w in words)
    before = rf"(?<![{_LATIN}])" if _LATIN_CHAR.match(words[0][0]) else ""
    after = rf"(?![{_LATIN}])" if _LATIN_CHAR.match(words[-1][-1]) else ""
    return re.compile(before + body + after, re.IGNORECASE)


def find_term(term: str, text: str) -> list[tuple[int, int]]:
    """Spans of ``term`` in ``text`` (which the caller has passed through ``normalise``)."""
    pat = term_pattern(term)
    return [m.span() for m in pat.finditer(text)] if pat else []
