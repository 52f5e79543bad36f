"""Personal data in text: e-mail addresses, phone numbers and URLs/domains. The finders return
spans, so the guardrails can reject an output and ``hygiene.scrub_pii`` can replace them in an input.

Phones are recognised by shape, not by "enough digits": international ``+CC ...`` numbers, US
``(555) 123-4567`` / ``555-123-4567``, Indian mobiles ``98765 43210`` / ``9876543210``, Chinese
mobiles ``138 0013 8000`` / ``13800138000`` and trunk-prefixed landlines ``010-12345678``. Prices
("$1,299.00"), years, dates ("2024-01-15"), sizes ("32x34") and labelled codes ("SKU 9876543210")
are not phones.
"""

from __future__ import annotations

import re

from pdgen_core.guardrails.context import GuardContext
from pdgen_core.guardrails.price import CURRENCY_CODES

# Boundaries are ASCII on purpose: "电话13800138000" and "邮箱ab@x.com" hold a phone and an
# address right after CJK characters, which Python's \w would glue on.
EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    r"(?![A-Za-z0-9-])"
)
_PHONE_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9_+.,/-])\+?\(?\d[\d ().\-\u00a0]{5,22}\d(?![A-Za-z0-9_.,/-]?\d)(?![A-Za-z0-9_])"
)
_CODE_LABEL = re.compile(
    r"(?i)(?:sku|isbn|asin|ean|upc|gtin|mpn|model|item|part|serial|order|art|ref|id|no|number|code"
    r"|style)\.?\s*[:#]?\s*$"
)
_MONEY_BEFORE = re.compile(rf"(?:[$€£₹¥]|Rs\.?|{'|'.join(CURRENCY_CODES)})\s?$")
_TLDS = (
    "com net org info biz io co ai app dev shop store online site xyz me tv cc us uk in cn de fr jp "
    "au ca es it nl ru br eu hk sg tw kr ch se no dk pl be at nz ie ae sa za mx"
).split()
# A bare domain needs a known TLD in one case ("fabric.It is soft" is a missing space, not a link).
_TLD = "|".join(_TLDS + [t.upper() for t in _TLDS])
_HOST = rf"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+(?:{_TLD})"
_PATH = r"[A-Za-z0-9\-._~:/?#@!$&*+,;=%]*"  # ASCII only: CJK prose often follows a link unspaced
# TLDs that are also English words, as in "blue.it is" (a missing space in real reviews): bare
# domains with them need a third label or a path ("shop.mystore.in", "mystore.in/sale").
_WORDLIKE_TLDS = frozenset("it in me us no be at co tv".split())
URL = re.compile(
    rf"(?<![A-Za-z0-9])(?i:https?://|ftp://|www\.){_PATH}"
    rf"|(?<![A-Za-z0-9@._-]){_HOST}(?![A-Za-z0-9@_-]|\.[A-Za-z0-9])(?:/{_PATH})?"
)


def _phone_shape(cand: str) -> bool:
    """Whether a run of digits and separators has the shape of a phone number."""
    groups = [g for g in re.split(r"[ ().\-\u00a0]+", cand.lstrip("+")) if g]
    digits = "".join(groups)
    sizes = [len(g) for g in groups]
    if cand.startswith("+"):
        return 8 <= len(digits) <= 15 and len(groups) >= 1
    if sizes in ([3, 3, 4], [1, 3, 3, 4]) and not cand[0] == "0":
        return True                                     # US
    if (sizes == [10] or sizes == [5, 5] and len(cand) == 11) and digits[0] in "6789":
        return True                                     # Indian mobile; not "70016- 70017"
    if sizes in ([11], [3, 4, 4]) and re.match(r"1[3-9]", digits):
        return True                                     # Chinese mobile
    # Trunk-prefixed landline (CN, UK, IN). A bare "555-1234" is not a phone here: in real
    # catalogs that shape is a model number ("DC Fix 334-0025").
    trunk = digits[0] == "0" and 2 <= sizes[0] <= 5 and min(sizes[1:], default=0) >= 3
    return trunk and 10 <= len(digits) <= 12


def _phone_within(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The longest leftmost run of digit groups in ``text[start:end]`` shaped like a phone, so
    that "call 13800138000 2 times" still finds the number."""
    groups = list(re.finditer(r"\d+", text[start:end]))
    for i in range(len(groups)):
        for j in range(len(groups), i, -1):
            a, b = start + groups[i].start(), start + groups[j - 1].end()
            while a > start and text[a - 1] in "+(":
                a -= 1
            if _phone_shape(text[a:b].strip(" ()")):
                return a, b
    return None


def find_phones(text: str) -> list[tuple[int, int]]:
    """Spans of phone numbers in ``text``."""
    out = []
    for m in _PHONE_CANDIDATE.finditer(text):
        before = text[max(0, m.start() - 12): m.start()]
        if _CODE_LABEL.search(before) or _MONEY_BEFORE.search(before):
            continue
        span = _phone_within(text, *m.span())
        if span:
            out.append(span)
    return out


def find_emails(text: str) -> list[tuple[int, int]]:
    """Spans of e-mail addresses in ``text``."""
    return [m.span() for m in EMAIL.finditer(text)]


def host_of(url: str) -> str:
    """The lower-cased host of a URL or bare domain, without ``www.``."""
    host = re.sub(r"(?i)^[a-z]+://", "", url).split("/")[0].split("?")[0].split(":")[0].lower()
    return host[4:] if host.startswith("www.") else host


def allowed(host: str, allowlist: tuple[str, ...]) -> bool:
    """Whether ``host`` is an allowlisted domain or a subdomain of one."""
    return any(host == d or host.endswith("." + d) for d in (host_of(a) for a in allowlist if a))


def find_urls(
    text: str, allowlist: tuple[str, ...] = (), keep: tuple[str, ...] = ()
) -> list[tuple[int, int]]:
    """Spans of URLs and bare domains outside ``allowlist``. E-mail addresses are not URLs, and a
    domain-like name in ``keep`` (a brand such as "ComicSense.xyz") is not one either."""
    masked = EMAIL.sub(lambda m: " " * len(m.group()), text)
    kept = {k.casefold() for k in keep}
    out = []
    for m in URL.finditer(masked):
        url = m.group().rstrip(".,;:!?")           # sentence punctuation is not part of a link
        if url.casefold() in kept or _missing_space(url) or allowed(host_of(url), allowlist):
            continue
        out.append((m.start(), m.start() + len(url)))
    return out


def _missing_space(url: str) -> bool:
    """Whether a bare "word.it" looks like two words without a space rather than a domain."""
    if "/" in url or url.lower().startswith("www."):
        return False
    labels = url.lower().split(".")
    return len(labels) == 2 and labels[-1] in _WORDLIKE_TLDS


def check_email(text: str, ctx: GuardContext) -> str | None:
    """``pii_email`` when the text contains an e-mail address."""
    return "pii_email" if find_emails(text) else None


def check_phone(text: str, ctx: GuardContext) -> str | None:
    """``pii_phone`` when the text contains a phone number."""
    return "pii_phone" if find_phones(text) else None


def check_url(text: str, ctx: GuardContext) -> str | None:
    """``pii_url`` when the text links to a domain outside ``ctx.url_allowlist``. Catalog brands
    that look like domains are not links."""
    keep = tuple(b for b in (*ctx.known_brands, ctx.brand or "") if "." in b)
    return "pii_url" if find_urls(text, ctx.url_allowlist, keep) else None
