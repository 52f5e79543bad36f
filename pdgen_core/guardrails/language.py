"""Language by script: a ``zh`` text must be mostly Chinese characters, an ``en`` text mostly
Latin letters. The unit is a word: a run of Latin (or other) letters, or two Chinese or kana
characters (Chinese words average about two characters). So "这款 Nike 跑鞋采用 Flyknit 鞋面" is
Chinese (two Latin words, four Chinese ones) and "Li-Ning 李宁 running shoes" is English.
Digits and punctuation do not count. Locales whose script is not known here pass.
"""

from __future__ import annotations

from collections import Counter

from pdgen_core.guardrails._text import normalise, script_of, tokens
from pdgen_core.guardrails.context import GuardContext

CHAR_WEIGHT = 0.5  # one Chinese character is half a word
# locale prefix -> (expected script, minimum share of letter units in it)
SCRIPTS = {
    "zh": ("cjk", 0.6),
    **{loc: ("latin", 0.8) for loc in ("en", "fr", "de", "es", "it", "pt", "nl", "id", "ms", "vi")},
}


def script_shares(text: str) -> dict[str, float]:
    """Share of letter units per script (``latin``, ``cjk``, ``kana``, ``other``)."""
    counts: Counter[str] = Counter()
    for script in map(script_of, tokens(normalise(text))):
        if script != "digit":
            counts[script] += CHAR_WEIGHT if script in ("cjk", "kana") else 1.0
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def check_language(text: str, ctx: GuardContext) -> str | None:
    """``wrong_language`` when too little of the text is in the locale's script."""
    rule = SCRIPTS.get(ctx.locale.split("-")[0].split("_")[0].lower())
    if rule is None:
        return None
    script, minimum = rule
    return "wrong_language" if script_shares(text).get(script, 0.0) < minimum else None
