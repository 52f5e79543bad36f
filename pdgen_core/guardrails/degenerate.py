"""Word salad that slips past ``repetition``: ``degenerate``.

The untrained ``pdgen-tiny`` wrote "A lightweight navyMeetMeet the Blue Yonder sneakers: classic,
crafted from bambooA sturdy navy..." and "Meet canvasThisAMeet canvas canvas canvas canvas": its
sentences run into each other without a space, and a loop of four copies survives ``repetition``
when the fifth is glued to the next word. Two signs, both after splitting glued words apart:

- a glued word: a lower-case run of two or more letters followed by a capital ("navyA",
  "MeetThis", "bambooA"); a word the row's facts contain passes ("PlayStation", "AccessHer"),
  and so do "Mc"/"Mac" names, one-letter prefixes ("McDonald", "iPhone", "eBay") and hashtags
  ("#SummerStyle": ``ungrounded_name`` reads their words);
- a loop: one to three words said three times in a row within a clause ("canvas canvas
  canvas");
- a hashtag used twice, or a word said twice in a row ("khaki khaki", "men's men's", "for
  men's men"), or a six-word run said twice ("their habitats, and their behaviors"), or a
  two-word phrase said three times in one short text, or once every 20 words of a long one
  ("a toy for kids, a great idea for kids ... for kids"), or a content word the facts do not
  give said three times, once every 15 words ("A Converter for Converter models ... to
  Converter models");
- an adjective left without its noun where a small model copies the prompt's "For: Unisex"
  field ("a curtain for unisex, a fun item");
- "a pair of" one thing: the phrase's head noun singular ("A pair of mustard yellow solid acrylic
  sweater", "A pair of single-door curtain", "have a pair of ankle-high": 8 of the 83 texts of
  the v4 description adapter that set 5 accepted on held-out Myntra rows, 2026-12-01); a pair of
  jeans, sandals or earrings passes;
- a non-word: a lower-case word of four letters or more that is neither English
  (``words.is_word``) nor a word of the facts ("bracakelet", "wavens", "unsuspension"); in
  English texts only;
- a rare word (set 7): English, but neither a common word (``words.common_words``: web and
  catalog text), nor one of those with an ending, nor a word of the guard's own catalog
  vocabularies (types, parts, materials, colours), nor a word of the facts or of a fact word's
  family ("perforation" for Perforated): "An adiabatic girls' blue dress" (ADIVA), "a large
  doll for dummies", "unwinding", "peafowls". A small model reaches for such words when it has
  misread a fact; copywriters mostly do not. English texts only;
- a word said again one word later ("Sea green solid woven solid cotton"), unless the words are
  colours, product or part words, or the middle one a preposition ("blue light blue", "side by
  side", "back closure back" in a spec list);
- a pattern or finish word left without its noun before "from" ("A table placemat with orange
  and blue printed from SEJ"; "woven from cotton" is English and passes).

Tuned on the 12,491 human Myntra descriptions (``tests/test_guardrails_real.py``): they contain
scraping defects of the same shape ("TSA lockOne handle"), which are real defects, and few else.
"""

from __future__ import annotations

import re
from collections import Counter

from pdgen_core.guardrails import attributes
from pdgen_core.guardrails._text import normalise
from pdgen_core.guardrails.context import GuardContext
from pdgen_core.guardrails.facts import WORD, fact_tokens
from pdgen_core.guardrails.words import common_words, is_word

PHRASE_REPEATS = 3  # a two-word phrase said this often in one text is a loop...
PHRASE_SPACING = 20  # ...and at least once every this many words
# Words that English doubles on purpose ("pom pom", "ylang ylang", "win win").
_DOUBLE_OK = frozenset("that had very so bye knock ha ho no is pom ylang win tom cha choo hush aye wow "
                       "yum bling".split())
_STOP = frozenset("a an and the of for with in on at by to from or is it its this that as be are you your "
                  "s".split())
WORD_REPEATS = 3    # a content word not in the facts said this often...
WORD_SPACING = 15   # ...and at least once every this many words
_FUNCTION = frozenset("about with your this that from they them their there these those have will would "
                      "could should what when where which while into onto over under also just very more "
                      "most such than then only each every other some many much well like make makes made "
                      "been being does done".split())
CLAUSE_WORDS = 6    # a run of this many words said twice is a restated clause
LOOP = 3            # this many copies in a row of a one- to three-word unit is a loop
MAX_UNIT = 3
_GLUE = re.compile(r"[a-z]{2,}[A-Z]")
_NAME_PREFIX = re.compile(r"(?:Mac|Mc)[A-Z]")
_HASHTAG = re.compile(r"#[^\s#]+")
_BARE_AUDIENCE = re.compile(r"\bfor\s+unisex\s*(?:[.,;:!?]|$)", re.IGNORECASE)
_LOWER = re.compile(r"(?<![0-9A-Za-z])[a-z]{4,}(?![0-9A-Za-z])")
_CLAUSE = re.compile(r"[.,;:!?()\n]+")
_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\W\d_A-Za-z]+")


def glued_words(text: str, ctx: GuardContext) -> list[str]:
    """Words that are two words run together, and not a word of the row's facts."""
    facts = fact_tokens(ctx)
    out = []
    for w in WORD.findall(_HASHTAG.sub(" ", normalise(text))):
        if _GLUE.search(w) and w.casefold() not in facts and not _NAME_PREFIX.match(w):
            out.append(w)
    return out


def loops(text: str) -> list[str]:
    """Units of one to three words repeated ``LOOP`` times in a row within one clause (so
    "love it, love it, love it" is not a loop), glued words split."""
    tags = [t.casefold() for t in _HASHTAG.findall(normalise(text))]
    found = [t for i, t in enumerate(tags) if t in tags[:i]]   # "#LavieSales #LavieSales"
    for clause in _CLAUSE.split(_HASHTAG.sub(".", normalise(text))):
        found += _loops([p.casefold() for w in WORD.findall(clause) for p in _PARTS.findall(w)])
    return list(dict.fromkeys(found))


def _loops(toks: list[str]) -> list[str]:
    found = [f"{a} {a}" for a, b in zip(toks, toks[1:])
             if a == b and len(a) >= 3 and a.isalpha() and a not in _DOUBLE_OK]
    # "men's men's": a possessive said twice; "for men's men": a word after its own possessive.
    found += [f"{a}'s {a}'s" for a, s1, b, s2 in zip(toks, toks[1:], toks[2:], toks[3:])
              if a == b and s1 == s2 == "s"]
    found += [f"{a}'s {a}" for a, s1, b in zip(toks, toks[1:], toks[2:])
              if a == b and s1 == "s" and a.isalpha() and len(a) >= 2]
    for n in range(1, MAX_UNIT + 1):
        for i in range(len(toks) - n * LOOP + 1):
            unit = toks[i:i + n]
            if all(toks[i + k * n: i + (k + 1) * n] == unit for k in range(1, LOOP)):
                found.append(" ".join(unit))
    return found


def repeated_phrases(text: str) -> list[str]:
    """Two-word phrases said ``PHRASE_REPEATS`` times or more in the text, one of them a content
    word ("for kids, ... for kids, ... for kids", "bullhorn speaker" four times)."""
    toks = [w.casefold() for w in WORD.findall(_HASHTAG.sub(" ", normalise(text)))]
    counts = Counter(zip(toks, toks[1:]))
    # In a long text a phrase may come back ("lip gloss" in a 300-word lip gloss page): it must
    # also come back often, once every PHRASE_SPACING words.
    least = max(PHRASE_REPEATS, len(toks) / PHRASE_SPACING)
    return [" ".join(g) for g, n in counts.items()
            if n >= least and not (g[0] in _STOP and g[1] in _STOP) and all(w.isalpha() for w in g)]


def repeated_words(text: str, ctx: GuardContext) -> list[str]:
    """Content words the row's facts do not give, said ``WORD_REPEATS`` times or more and at
    least once every ``WORD_SPACING`` words: "A Converter for Converter models that can convert
    any model to Converter models" (a model kit). A word of the facts may come back ("5 glittery
    headbands ... each headband")."""
    facts = fact_tokens(ctx)
    toks = [w.casefold() for w in WORD.findall(_HASHTAG.sub(" ", normalise(text)))]
    counts = Counter(t for t in toks if len(t) >= 4 and t.isalpha() and t not in facts and t not in _FUNCTION)
    least = max(WORD_REPEATS, len(toks) / WORD_SPACING)
    return [w for w, n in counts.items() if n >= least]


def repeated_clauses(text: str) -> list[str]:
    """Runs of ``CLAUSE_WORDS`` words said twice in one text ("... about animals, their
    habitats, and their behaviors. ... about different animals, their habitats, and their
    behaviors."): a small model restating itself. Punctuation is ignored; runs with a number
    are not counted (a size may be restated: "19cm (H) and 15.5cm (W)")."""
    toks = [w.casefold() for w in WORD.findall(_HASHTAG.sub(" ", normalise(text)))]
    n = CLAUSE_WORDS
    grams = Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)
                    if all(t.isalpha() for t in toks[i:i + n]))
    return [" ".join(g) for g, k in grams.items() if k >= 2]


def non_words(text: str, ctx: GuardContext) -> list[str]:
    """Lower-case words that are not English and not words of the row's facts."""
    if not ctx.locale.lower().startswith("en"):   # the dictionary is English
        return []
    facts = fact_tokens(ctx)
    return [w for w in _LOWER.findall(normalise(text)) if w not in facts and not is_word(w)]


# The guard's own catalog words, which the common list may lack ("eyewear", "ballerina", "tote").
_CATALOG = frozenset(attributes.TYPES) | frozenset(attributes.SUBTYPES) | attributes.PARTS | attributes.MATERIALS \
    | attributes.COLOURS | frozenset(attributes.CONSTRUCTION) | attributes.GENERIC_TYPES | attributes.GENERIC_PARTS
_LOWER_ALONE = re.compile(r"(?<![0-9A-Za-z'-])[a-z]{4,}(?![0-9A-Za-z'-])")   # not part of "self-design"
_COMMON_ENDINGS = ("s", "es", "ed", "d", "ing", "er")
FAMILY = 6   # a rare word that shares this many first letters with a fact word is of its family


def _ordinary(word: str) -> bool:
    common = common_words()
    return any(w in common or w in _CATALOG for w in
               (word, *(word[: -len(e)] for e in _COMMON_ENDINGS if word.endswith(e))))


def rare_words(text: str, ctx: GuardContext) -> list[str]:
    """English words outside ordinary use that the row's facts do not give, in any form of
    theirs: "adiabatic" (ADIVA), "dummies", "peafowls"."""
    if not ctx.locale.lower().startswith("en"):
        return []
    facts = fact_tokens(ctx)
    stems = {f[:FAMILY] for f in facts if len(f) >= FAMILY}
    return [w for w in _LOWER_ALONE.findall(normalise(text))
            if w not in facts and not _ordinary(w) and is_word(w)
            and not (len(w) >= FAMILY and w[:FAMILY] in stems)]


# Words a split repeat may have: colours and their modifiers ("blue light blue"), product and part
# words of spec lists ("regular trousers regular trousers", "back closure back style").
_SPLIT_OK = (frozenset(attributes.TYPES) | frozenset(attributes.SUBTYPES) | attributes.PARTS
             | attributes.GENERIC_PARTS | attributes.COLOURS | attributes.GENERIC_TYPES
             | frozenset("light dark off pale deep bright closure style fit".split()))
_LINKS = _STOP | _FUNCTION | frozenset("after upon over against off".split())


def split_repeats(text: str) -> list[str]:
    """A word said again one word later within a clause: "solid woven solid cotton"."""
    found = []
    for clause in _CLAUSE.split(_HASHTAG.sub(".", normalise(text))):
        t = [w.casefold() for w in WORD.findall(clause)]
        found += [f"{a} {b} {c}" for a, b, c in zip(t, t[1:], t[2:])
                  if a == c != b and len(a) >= 4 and a.isalpha() and b.isalpha()
                  and a not in _LINKS and b not in _LINKS and not {a, b} & _SPLIT_OK]
    return found


# ("woven from cotton" and "the top is printed." are English: only "from" after a pattern word.)
_DANGLING = re.compile(r"\b(?:printed|striped|checked|solid|embroidered|embellished|textured|patterned|"
                       r"self-design)(?=\s+from\b)", re.IGNORECASE)


def dangling_adjectives(text: str) -> list[str]:
    """A pattern or finish word with no noun after it: "with orange and blue printed from SEJ"."""
    return _DANGLING.findall(normalise(text))


# "a pair of" and its noun phrase, to the word before a preposition or the clause's end.
_PAIR = re.compile(r"\bpair of\s+((?:[a-z0-9-]+\s+){0,7}?)([a-z-]+)"
                   r"(?=\s+(?:from|by|for|with|in|that|to|made|is|are|and\s+(?:a|an|the|one))\b|\s*[,.;:!?)]|\s*$)")


def lone_pairs(text: str) -> list[str]:
    """"a pair of" phrases whose head noun is singular (English): one thing is not a pair."""
    low = normalise(text).casefold()
    return [m.group(0) for m in _PAIR.finditer(low)
            if not m.group(2).endswith("s") or m.group(2).endswith("ss")]   # "dress" is one


def check_degenerate(text: str, ctx: GuardContext) -> str | None:
    """``degenerate`` when words are glued together, a short unit loops or a word is not one."""
    english = ctx.locale.lower().startswith("en")
    bad = (glued_words(text, ctx) or loops(text) or repeated_phrases(text) or repeated_words(text, ctx)
           or repeated_clauses(text)
           or non_words(text, ctx) or (english and lone_pairs(text)) or rare_words(text, ctx)
           or split_repeats(text) or (english and dangling_adjectives(text))
           or _BARE_AUDIENCE.search(normalise(text)))
    return "degenerate" if bad else None
