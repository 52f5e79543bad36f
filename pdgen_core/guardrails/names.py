"""Names the row does not state: ``ungrounded_name``.

A small instruct model names things freely: "crafted by Ahlya Sterling, a renowned designer",
"Bvlgari is a French perfumer", "a classic Japanese fashion brand" (Tokyo Talkies is Indian),
"listed on Amazon's Facebook page", "The HARBOARDER is our favorite teddy bear". This check
generalises ``other_brand`` (which only knows the catalog's brands) to any name. A word counts
as a name when it is written like one and is not a word of the row's facts:

- a word in ``NAMES`` (places, nationalities, retailers, platforms), however it is written;
- a word with letters and digits ("X200", "WH1000XM4"), but not a number with a unit ("100ml");
- an all-capitals word that is not an ordinary English word ("HARBOARDER"; "NEW" is fine);
- a capitalised word that is not an ordinary English word ("Humongous", "Bvlgari", "Ahlya");
- mid-sentence, two capitalised words in a row, one of them not in the facts ("the Blue Yonder
  sneakers", "by Graphic Design Co", "the Wild West" for a Wild Republic horse), unless the
  sentence is written in Title Case (an ad headline);
- a place or nationality that the facts give only inside the brand, outside the brand ("a dress
  from Tokyo" for Tokyo Talkies).

The row's brand written as another name ("big jigs" for Bigjigs, "street nine" for STREET 9,
"a plums bestseller kit" for Plum Bestseller Kit) is a name the row does not give
(``respelt_brand``).

Ordinary English words (``words.common_words``) pass
when capitalised alone ("Perfect for summer", "Crafted from cotton", "#SummerStyle"), and so do
the words in ``ALLOWED`` (sizes, standards, months, holidays). Words of the facts pass however
they are written; the row's own brand is a fact.
"""

from __future__ import annotations

import re

from pdgen_core.guardrails._text import normalise
from pdgen_core.guardrails.context import GuardContext
from pdgen_core.guardrails.facts import WORD, fact_strings, fact_tokens
from pdgen_core.guardrails.words import common_words

# Names in any casing: "french" and "india" are ordinary lower-case web text, never our facts.
NAMES = frozenset("""
amazon flipkart myntra ajio nykaa snapdeal meesho jabong walmart ebay etsy alibaba aliexpress
costco ikea shopify nordstrom macys tatacliq bigbasket
facebook instagram twitter tiktok youtube pinterest whatsapp snapchat linkedin google
india china japan korea usa america england britain uk france italy germany spain sweden
switzerland europe asia africa australia canada mexico brazil turkey thailand russia dubai
paris tokyo london milan york mumbai delhi bangalore bengaluru kolkata chennai jaipur hyderabad
california texas florida hollywood seoul beijing shanghai berlin rome venice barcelona
indian chinese japanese korean american british english french italian german spanish swiss
swedish danish scandinavian european asian african australian canadian mexican brazilian
turkish thai russian greek irish scottish dutch persian egyptian moroccan
""".split())
# Capitalised or all-capital words that are not names.
ALLOWED = frozenset("""
ok tv usb led lcd hd uv ac dc pc diy bpa spf gsm pu pvc eva tpu abs rfid gps wifi wi fi bluetooth
xs xl xxl xxxl 2xl 3xl 4xl 3d 4k faq
inr usd eur gbp cny rs mrp
january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday
christmas diwali holi eid halloween easter valentine valentines thanksgiving
""".split())
# Short words that keep a line Title Case ("Soft Cotton Tee for Summer").
_SMALL = frozenset("a an and the of for with in on at by to from or your our its".split())
_UNIT = re.compile(r"\d+(?:st|nd|rd|th|[a-z]{1,4})", re.IGNORECASE)   # 100ml, 2lbs, 3rd
_STARTS = re.compile(r"[.!?:;\n•*|\"“”'‘(\[–—-]")                    # what may precede a sentence
_RUN_GAP = re.compile(r"[ \t]+|[ \t]*&[ \t]*")
_HASHTAG = re.compile(r"#(\w+)")
_CAMEL_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
TITLE_SHARE = 0.75


def _is_cap(word: str) -> bool:
    """Any capital letter in it ("Perfect", "DKNY", "iPhone")."""
    return word != word.lower()


def _title_case(sentence: list[str]) -> bool:
    content = [w for w in sentence if len(w) > 1 and not w.isdigit() and w.casefold() not in _SMALL]
    caps = sum(_is_cap(w) for w in content)
    return len(content) >= 2 and caps >= TITLE_SHARE * len(content)


def _name_like(word: str, alone: bool, facts: frozenset[str]) -> bool:
    """Whether one word reads as a name the facts do not give. ``alone``: it is at a sentence
    start, in a Title Case sentence or a hashtag, where an ordinary word is capitalised."""
    low = word.casefold()
    if low in facts or low in ALLOWED or len(word) < 2:
        return False
    if low in NAMES:
        return True
    if any(c.isdigit() for c in word):
        return any(c.isalpha() for c in word) and not _UNIT.fullmatch(word)
    if not _is_cap(word):
        return False
    return low not in common_words()


def _sentences(text: str) -> list[list[tuple[str, bool, int, int]]]:
    """Sentences as lists of (word, at_sentence_start, start, end)."""
    out: list[list[tuple[str, bool, int, int]]] = []
    prev_end = None
    for m in WORD.finditer(text):
        gap = text[prev_end:m.start()] if prev_end is not None else ""
        start = prev_end is None or bool(_STARTS.search(gap))
        if prev_end is None or re.search(r"[.!?\n]", gap):
            out.append([])
        out[-1].append((m.group(), start, m.start(), m.end()))
        prev_end = m.end()
    return out


def _brand_only(ctx: GuardContext) -> frozenset[str]:
    """``NAMES`` words that the facts give only inside the brand ("Tokyo" of Tokyo Talkies)."""
    brand = {w.casefold() for w in WORD.findall(normalise(ctx.brand or ""))} & NAMES
    if not brand:
        return frozenset()
    others = [normalise(v) for k, v in ctx.fields.items() if k != "brand" and isinstance(v, str)]
    title = normalise(ctx.title or "").casefold().replace(normalise(ctx.brand or "").casefold(), " ")
    rest = {w.casefold() for w in WORD.findall(" ".join(others).casefold().replace(
        normalise(ctx.brand or "").casefold(), " ") + " " + title)}
    return frozenset(brand - rest)


def find_names(text: str, ctx: GuardContext) -> list[str]:
    """The words or runs of words in ``text`` that read as names the row's facts do not give."""
    text = normalise(text)
    facts = fact_tokens(ctx)
    # A place the facts give only as part of the brand is the brand's, not a place: "from Tokyo"
    # for Tokyo Talkies says where the dress comes from.
    brand_only = _brand_only(ctx)
    if brand_only:
        without_brand = re.sub(re.escape(normalise(ctx.brand or "")), " ", text, flags=re.IGNORECASE)
        found_only = [w for w in WORD.findall(without_brand) if w.casefold() in brand_only]
        if found_only:
            return found_only
    found: list[str] = []
    for tag in _HASHTAG.findall(text):
        found += [p for p in _CAMEL_PART.findall(tag) if _name_like(p, True, facts)]
    text = _HASHTAG.sub(".", text)
    for sentence in _sentences(text):
        title = _title_case([w for w, *_ in sentence])
        run: list[str] = []
        for i, (word, start, a, b) in enumerate(sentence):
            if _name_like(word, start or title, facts):
                found.append(word)
            # A run of capitalised words mid-sentence that the facts do not give.
            joined = i > 0 and _RUN_GAP.fullmatch(text[sentence[i - 1][3]:a] or "") is not None
            counts = (not start and not title and _is_cap(word) and word.casefold() not in ALLOWED
                      and not word.isdigit() and len(word) > 1)
            if counts and (joined or not run):
                run.append(word)
            elif counts:
                run = [word]
            else:
                run = []
            # Two capitalised words in a row mid-sentence, one of them not a word of the facts:
            # "the Blue Yonder sneakers", "the Wild West" (Wild Republic's horse).
            if len(run) >= 2 and any(w.casefold() not in facts for w in run[-2:]):
                found.append(" ".join(run[-2:]))
    return found


_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
_NAME_TOKEN = re.compile(r"[0-9A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]+(?:['’]s\b)?")


def respelt_brand(text: str, ctx: GuardContext) -> list[str]:
    """The row's brand written as another name: split or joined ("big jigs" for Bigjigs), a digit
    as a word ("street nine" for STREET 9), or made plural where it stands as the brand ("a plums
    bestseller kit" for Plum's Bestseller Kit: the title's next word follows it). Case does not
    count ("dressberry" is DressBerry). With no brand field, the title's first word is taken as
    the brand (Amazon titles start with it)."""
    title = normalise(ctx.title or str(ctx.fields.get("title") or ""))
    brand = normalise(ctx.brand or "") or " ".join(WORD.findall(title)[:1])
    own = [t.casefold() for t in WORD.findall(brand)]
    if not own:
        return []
    after = title.casefold().split(brand.casefold(), 1)
    follow = WORD.findall(after[1])[:1] if len(after) == 2 else []
    key = "".join(_NUMBER_WORDS.get(t, t) for t in own)
    toks = [re.sub(r"['’]s$", "", t).casefold() for t in _NAME_TOKEN.findall(normalise(text))]
    # A form the facts use is the brand's own ("Bath Blocks bring ..." for BathBlocks).
    stated = " " + " ".join(" ".join(WORD.findall(f)).casefold() for f in fact_strings(ctx)) + " "
    found = []
    for n in range(1, len(own) + 2):
        for i in range(len(toks) - n + 1):
            window = toks[i:i + n]
            if window == own or f" {' '.join(window)} " in stated:
                continue
            joined = "".join(_NUMBER_WORDS.get(t, t) for t in window)
            if joined == key:
                found.append(" ".join(window))
            elif (joined == key + "s" or joined == key + "es") and follow and \
                    toks[i + n: i + n + 1] == [follow[0].casefold()]:
                found.append(" ".join(window))
    return found


def check_ungrounded_name(text: str, ctx: GuardContext) -> str | None:
    """``ungrounded_name`` when the text names a person, place, retailer, brand or model that
    the row's facts do not give, or writes the row's brand as another name."""
    return "ungrounded_name" if find_names(text, ctx) or respelt_brand(text, ctx) else None
