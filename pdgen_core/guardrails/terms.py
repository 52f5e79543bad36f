"""Grounding in names and words: the row's brand is named, no other catalog brand is, and no
banned term appears. Matching is case-insensitive and word-bounded (see ``_text.term_pattern``).

Brands are awkward. Real catalogs (Myntra's 677 brands) hold brands that are ordinary words
("WITH", "CAT", "boAt", "Slub", "Plum", "AND", "Basics"), brands inside other brands ("U.S. Polo
Assn." inside "U.S. Polo Assn. Denim Co."), and brands that extend the row's brand ("ADIDAS
Originals" for an "ADIDAS" row). So, for *other* brands:

- a mention inside a mention of the row's own brand does not count;
- a brand with digits or symbols ("H&M", "109F") or in another script ("李宁") counts in any case;
- a brand made of Latin letters counts when written exactly as in the catalog or in capitals,
  or, when it is one uncommon word of five letters or more ("Reebok"), in any case; so "a boat
  neck", "cat eye", "Face And Beard Wash" or "T-shirt With Side Strip" name no brand.

The row's own brand counts however it is written: that check is for presence, not casing.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pdgen_core.guardrails._text import find_term, normalise, tokens
from pdgen_core.guardrails.context import GuardContext
from pdgen_core.guardrails.facts import fact_tokens

# Common English words that are also brand names in real catalogs (Myntra has "AND", "Basics",
# "Arrow", "even", "Simply", "Black coffee", ...): only their exact or upper-case form is the brand.
COMMON_WORDS = frozenset("""
a an and the of for with in on at by to from or but not no so as is are be it its this that
all any more most less new now here there home life daily basic basics black white blue red green
grey gray pink brown gold silver coffee story stories arrow style studio house co company fashion
forever sport sports active classic urban street denim wear kids baby little big one only just
free fit fits good great best love pure true real wild nature natural smart simple plain united
colors rain rainbow force league tales mast harbour mango peach cherry even simply with cat boat
""".split())
_LETTERS_ONLY = re.compile(r"[A-Za-z][A-Za-z' -]*")


def _is_common(brand: str) -> bool:
    words = re.findall(r"[a-z0-9']+", brand.lower())
    return bool(words) and all(w in COMMON_WORDS for w in words)


def _is_the_brand(brand: str, found: str) -> bool:
    """Whether ``found`` (a case-insensitive match of another brand) names the brand rather than
    using ordinary words; see the module docstring."""
    if not _LETTERS_ONLY.fullmatch(brand):
        return True
    if found == brand:
        return not (brand.islower() and _is_common(brand)) and len(brand) > 1
    if found.isupper() and len(found) > 1:
        return True
    if len(brand.split()) > 1:
        return not found.islower() and not _is_common(brand)
    return len(brand) >= 5 and not _is_common(brand)


def mentions(brand: str, text: str) -> list[tuple[int, int]]:
    """Spans where another catalog brand is named in ``text`` (normalised)."""
    return [(a, b) for a, b in find_term(brand, text) if _is_the_brand(brand, text[a:b])]


@lru_cache(maxsize=8)
def _by_first_token(known: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """Catalog brands indexed by their first token, so a text is matched only against brands
    whose first word it contains (a catalog may hold thousands of brands)."""
    index: dict[str, list[str]] = {}
    for brand in known:
        brand = normalise(brand).strip()
        toks = tokens(brand)
        if brand:
            index.setdefault(toks[0] if toks else "", []).append(brand)
    return {k: tuple(v) for k, v in index.items()}


def _candidates(text: str, known: frozenset[str]) -> list[str]:
    index = _by_first_token(known)
    present = set(tokens(text)) | {""}
    return [b for tok in present for b in index.get(tok, ())]


def check_other_brand(text: str, ctx: GuardContext) -> str | None:
    """``other_brand`` when a catalog brand other than the row's is named, outside mentions of
    the row's own brand."""
    if not ctx.known_brands:
        return None
    text = normalise(text)
    own = normalise(ctx.brand or "").strip()
    own_spans = find_term(own, text) if own else []
    for other in _candidates(text, ctx.known_brands):
        if other.casefold() == own.casefold():
            continue
        for a, b in mentions(other, text):
            if not any(s <= a and b <= e for s, e in own_spans):
                return "other_brand"
    return None


def check_brand_missing(text: str, ctx: GuardContext) -> str | None:
    """``brand_missing`` when the row has a brand and the text does not name it."""
    own = normalise(ctx.brand or "").strip()
    return "brand_missing" if own and not find_term(own, normalise(text)) else None


# Words unfit for product copy that a small model writes unprompted ("A navy blue denim stripper
# dress for girls", SmolLM2 on a real Myntra row, 2026-12-01): sex work, pornography, profanity,
# slurs, hard drugs, violence. Kept short and unambiguous on purpose: "nude" (a colour), "strip"
# (a design), "kill" ("weed killer") are product words. A word the row itself states passes: a
# catalog that sells a "wire stripper" may say so.
UNFIT_WORDS = frozenset("""
stripper strippers striptease porn porno pornographic pornography xxx slut sluts whore whores
hooker hookers prostitute prostitutes brothel escort-service rape raped rapes rapist pedophile
paedophile fuck fucks fucked fucking fucker shit shits shitty bullshit bitch bitches bastard
bastards asshole assholes cunt cunts motherfucker nazi nazis hitler terrorist terrorists
terrorism suicide cocaine heroin meth methamphetamine retard retarded
""".split())


def check_unfit(text: str, ctx: GuardContext) -> str | None:
    """``unfit_term`` when the text uses a word of ``UNFIT_WORDS`` that the row does not."""
    found = {t for t in tokens(normalise(text)) if t in UNFIT_WORDS}
    return "unfit_term" if found - fact_tokens(ctx) else None


def check_banned(text: str, ctx: GuardContext) -> str | None:
    """``banned_term`` when any of ``ctx.banned_terms`` appears (case-insensitive, word-bounded)."""
    text = normalise(text)
    return "banned_term" if any(find_term(t, text) for t in ctx.banned_terms) else None
