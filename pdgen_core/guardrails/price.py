"""Price consistency: every price stated in the text must be the row's price in the row's currency.

A price is a number with a currency marker right before it ("$12.99", "USD 12.99", "₹1,299",
"Rs. 1299", "¥99") or right after it ("12,99 €", "1299 INR", "12.99 dollars", "99元"). Bare numbers
(sizes, years, SKUs, "2 pockets") are not prices. Number formats are read every plausible way
("1,299" is 1299 or 1.299; "1.299,00" is 1299) and the text passes when one reading equals the
row's price to the cent. A text that states no price passes; a price in another currency, or any
price when the row has none, is ``price_mismatch``.
"""

from __future__ import annotations

import math
import re

from pdgen_core.guardrails._text import normalise
from pdgen_core.guardrails.context import GuardContext

_DOLLARS = frozenset({"USD", "CAD", "AUD", "NZD", "SGD", "HKD", "TWD", "MXN"})
_YEN = frozenset({"CNY", "JPY"})
# Marker text (as written, lower-cased for words) -> the currencies it may mean.
_SYMBOLS = {
    "$": _DOLLARS, "us$": {"USD"}, "c$": {"CAD"}, "ca$": {"CAD"}, "a$": {"AUD"}, "au$": {"AUD"},
    "s$": {"SGD"}, "hk$": {"HKD"}, "nz$": {"NZD"}, "nt$": {"TWD"}, "r$": {"BRL"},
    "€": {"EUR"}, "£": {"GBP"}, "₹": {"INR"}, "rs": {"INR"}, "rs.": {"INR"}, "₨": {"INR"},
    "¥": _YEN, "元": {"CNY"}, "块钱": {"CNY"}, "人民币": {"CNY"}, "rmb": {"CNY"},
    "美元": {"USD"}, "欧元": {"EUR"}, "日元": {"JPY"}, "英镑": {"GBP"}, "卢比": {"INR"},
    "港元": {"HKD"}, "港币": {"HKD"},
    "₩": {"KRW"}, "₽": {"RUB"}, "₺": {"TRY"}, "฿": {"THB"}, "₫": {"VND"}, "₱": {"PHP"},
    "dollar": _DOLLARS, "dollars": _DOLLARS, "euro": {"EUR"}, "euros": {"EUR"},
    "rupee": {"INR"}, "rupees": {"INR"}, "yuan": {"CNY"}, "yen": {"JPY"},
}
# ISO 4217 codes are markers only in capitals ("USD 12", not "usd") and only real ones, so
# "12 USB ports" or "3 XXL" are not prices.
CURRENCY_CODES = _CODES = tuple((
    "USD EUR GBP INR CNY RMB JPY CAD AUD NZD SGD HKD TWD CHF SEK NOK DKK PLN CZK HUF BRL MXN "
    "KRW RUB TRY THB VND PHP IDR MYR ZAR AED SAR ILS"
).split())
_CODE = rf"(?:{'|'.join(_CODES)})(?![A-Za-z])"
_SYM = r"US\$|C\$|CA\$|A\$|AU\$|S\$|HK\$|NZ\$|NT\$|R\$|\$|€|£|₹|₨|¥|₩|₽|₺|฿|₫|₱"
_PREFIX = re.compile(rf"(?:(?<![A-Za-z])(?:{_CODE}|[Rr]s\.?|RMB|人民币)|{_SYM})\s?$")
# Not a bare 块 after a number: it is also a measure word ("2块电池", two batteries).
_WORDS = r"(?i:dollars?|euros?|rupees?|yuan|yen|rmb)(?![A-Za-z])"
_ZH = r"[美欧日港]元|港币|英镑|卢比|元|块钱"
_SUFFIX = re.compile(rf"^\s?(?:{_CODE}|€|£|₹|₨|¥|₩|₽|₺|฿|₫|₱|{_ZH}|{_WORDS})")
# Digits with separators; a space (or thin space) separates thousands only: "1 299,00 €".
_NUMBER = re.compile(r"(?<![\d.,])\d+(?:[.,']\d+|[\u2009\u202f ]\d{3}(?!\d))*")


def _marker_currencies(marker: str) -> frozenset[str]:
    m = marker.strip()
    if m in _CODES:
        return frozenset({"CNY"} if m == "RMB" else {m})
    return frozenset(_SYMBOLS.get(m.lower(), ()))


def readings(number: str) -> set[float]:
    """Every plausible value of a written number. The last separator is a decimal point when one
    or two digits follow it, a thousands separator or a decimal point when three follow ("1,299"),
    and only a thousands separator when an earlier separator is the same ("1,29,999")."""
    groups = re.split(r"[.,'\u2009\u202f ]", number)
    seps = re.findall(r"[.,'\u2009\u202f ]", number)
    whole = float("".join(groups))
    if not seps or seps[-1] in seps[:-1] or seps[-1] not in ".,":
        return {whole}
    as_decimal = float("".join(groups[:-1]) + "." + groups[-1])
    last = len(groups[-1])
    if last in (1, 2):
        return {as_decimal}
    return {whole, as_decimal} if last == 3 else {whole}


def stated_prices(text: str) -> list[tuple[set[float], frozenset[str]]]:
    """(readings, currencies) for each number in ``text`` that carries a currency marker."""
    text = normalise(text).replace("\u00a0", " ")
    out = []
    for m in _NUMBER.finditer(text):
        pre = _PREFIX.search(text, max(0, m.start() - 8), m.start())
        post = _SUFFIX.search(text[m.end(): m.end() + 8])
        currencies = frozenset()
        for hit in (pre, post):
            if hit:
                currencies |= _marker_currencies(hit.group())
        if currencies:
            out.append((readings(m.group()), currencies))
    return out


def check_price(text: str, ctx: GuardContext) -> str | None:
    """``price_mismatch`` when a stated price is not the row's price in the row's currency."""
    for values, currencies in stated_prices(text):
        known = ctx.price is not None and math.isfinite(ctx.price)
        if not known or ctx.currency.upper() not in currencies:
            return "price_mismatch"
        if not any(abs(v - ctx.price) < 0.005 for v in values):
            return "price_mismatch"
    return None
