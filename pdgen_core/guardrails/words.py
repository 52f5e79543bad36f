"""English word lists for the checks (built by ``tests/corpus/make_common_words.py``):

- ``common_words()``: ordinary words (``words_en.txt``, about 22,000): the whole-word lower-case
  tokens of SmolLM2's vocabulary and the catalog words of the real Myntra and Amazon texts;
- ``is_word(w)``: ``w`` is English: a common word, a word of Webster's Second
  (``dictionary_en.txt.gz``, public domain, about 198,000 more), or one of them with a plural,
  verb or comparative ending ("slippers", "shopping", "curtained").

Both load once per process, on first use.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

_HERE = Path(__file__).parent
# (ending, what replaces it): "slippers" -> "slipper", "ties" -> "tie"/"ty", "making" -> "make".
_ENDINGS = (("s", ""), ("es", ""), ("ies", "y"), ("ed", ""), ("ed", "e"), ("d", ""), ("ing", ""),
            ("ing", "e"), ("er", ""), ("er", "e"), ("ers", ""), ("est", ""), ("ly", ""),
            ("ness", ""), ("ful", ""), ("less", ""), ("able", ""), ("ish", ""))


@lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """Ordinary English words, lower-case."""
    return frozenset((_HERE / "words_en.txt").read_text(encoding="utf-8").split())


@lru_cache(maxsize=1)
def dictionary() -> frozenset[str]:
    """Every English word the checks know, lower-case."""
    more = gzip.decompress((_HERE / "dictionary_en.txt.gz").read_bytes()).decode().split()
    return common_words() | frozenset(more)


@lru_cache(maxsize=65536)
def is_word(word: str) -> bool:
    """Whether lower-case ``word`` is English, allowing common endings and a doubled final
    consonant ("shopping", "slimmer")."""
    words = dictionary()
    if word in words:
        return True
    for end, repl in _ENDINGS:
        stem = word[: -len(end)]
        if word.endswith(end) and len(stem) >= 3:
            if stem + repl in words or (stem[-1] == stem[-2] and stem[:-1] + repl in words):
                return True
    return False
