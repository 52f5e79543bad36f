"""The row's facts as a check sees them: every string the row states (title, brand, category,
colour, material, gender, attributes, review texts...) and their lower-case word tokens.

Built from ``GuardContext.fields`` (the dict the prompt was rendered from) plus ``title`` and
``brand``, so a check written against a bare context (``GuardContext(title=...)``) also works.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pdgen_core.guardrails._text import normalise
from pdgen_core.guardrails.context import GuardContext

# Latin words and digits; apostrophes, hyphens and dots split ("T-shirt" is "t", "shirt").
WORD = re.compile(r"[0-9A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]+")


def strings(value: Any) -> list[str]:
    """Every string inside a row value (through lists and dicts, keys excluded); numbers too,
    as text, so "1299" is a fact of a row whose price is 1299."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [str(value)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings(v)]
    return []


def fact_strings(ctx: GuardContext) -> tuple[str, ...]:
    """The row's strings, normalised (NFKC, no invisible characters)."""
    return tuple(normalise(s) for s in strings([ctx.fields, ctx.title, ctx.brand]) if s)


@lru_cache(maxsize=4096)
def _tokens_of(texts: tuple[str, ...]) -> frozenset[str]:
    words: set[str] = set()
    for t in texts:
        found = [w.casefold() for w in WORD.findall(t)]
        words.update(found)
        # "Tshirt" in a title and "T-shirt" in the text, "Access Her" and "AccessHer".
        words.update(a + b for a, b in zip(found, found[1:]))
    return frozenset(words)


def fact_tokens(ctx: GuardContext) -> frozenset[str]:
    """Lower-case word tokens of the row's facts, and each adjacent pair of them joined."""
    return _tokens_of(fact_strings(ctx))
