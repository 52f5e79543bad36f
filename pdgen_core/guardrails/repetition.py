"""Degenerate repetition: a token looping ("great great great great") or a text made mostly of
repeated n-grams (a sentence or phrase the model keeps emitting). Tuned on real review texts
(English and Chinese) so that ordinary prose passes; see tests/test_guardrails.py."""

from __future__ import annotations

import re

from pdgen_core.guardrails._text import script_of, tokens
from pdgen_core.guardrails.context import GuardContext

MAX_RUN = 4          # this many identical tokens in a row is a loop
NGRAM_LATIN = 5      # n-gram size in words
NGRAM_CJK = 6        # n-gram size in characters (a Chinese word is about two characters)
MAX_DUP_FRACTION = 0.35
# Too short for n-grams: "Great tee. Great tee. Great tee." has 1/3 distinct tokens; in 24k
# English reviews and 12k Myntra descriptions no text of 6-15 tokens had fewer than 0.62.
MIN_SHORT_TOKENS = 6
MIN_SHORT_DISTINCT = 0.5
SENTENCE_TOKENS = 4  # a sentence of at least this many tokens said twice, word for word, is a restatement
_SENTENCE_END = re.compile(r"[.!?\n\u3002\uff01\uff1f]+")


def longest_run(toks: list[str]) -> int:
    """Length of the longest run of one repeated token."""
    best = run = 0
    prev = None
    for t in toks:
        run = run + 1 if t == prev else 1
        best, prev = max(best, run), t
    return best


def dup_ngram_fraction(toks: list[str], n: int) -> float:
    """Share of tokens covered by repeats of an earlier n-gram (the first occurrence is not
    counted: "a round neck ... a round neck" in a short text is fine, a sentence said twice is
    half redundant)."""
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(toks)
    for i in range(len(toks) - n + 1):
        gram = tuple(toks[i:i + n])
        if gram in seen:
            covered[i:i + n] = [True] * n
        seen.add(gram)
    return sum(covered) / len(toks) if toks else 0.0


def repeated_sentences(text: str) -> list[str]:
    """Sentences of ``SENTENCE_TOKENS`` or more tokens that the text says twice, word for word
    ("... Includes bus driver and 4 Miniature passenger figurines. Includes bus driver and 4
    Miniature passenger figurines."): a small model restating itself. Numbers count here, unlike
    in ``degenerate.repeated_clauses``: a size restated inside other words is fine, a whole
    sentence said twice is not. Copy on a product page never needs it."""
    seen: set[tuple[str, ...]] = set()
    twice = []
    for sentence in _SENTENCE_END.split(text):
        toks = tuple(t.casefold() for t in tokens(sentence))
        if len(toks) < SENTENCE_TOKENS:
            continue
        if toks in seen:
            twice.append(" ".join(toks))
        seen.add(toks)
    return twice


def check_repetition(text: str, ctx: GuardContext) -> str | None:
    """``repetition`` when a token loops, repeated n-grams cover too much of the text, or a
    sentence is said twice."""
    toks = tokens(text)
    if longest_run(toks) >= MAX_RUN or repeated_sentences(text):
        return "repetition"
    cjk = sum(script_of(t) == "cjk" for t in toks)
    n = NGRAM_CJK if cjk * 2 > len(toks) else NGRAM_LATIN
    if len(toks) >= 3 * n:
        looping = dup_ngram_fraction(toks, n) > MAX_DUP_FRACTION
    else:
        looping = len(toks) >= MIN_SHORT_TOKENS and len(set(toks)) / len(toks) < MIN_SHORT_DISTINCT
    return "repetition" if looping else None
