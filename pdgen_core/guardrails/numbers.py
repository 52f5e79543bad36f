"""Numbers the row does not state: ``ungrounded_number``.

Every number an output states must be a number the row states, in any field the task reads (the
price included), read tolerantly: "1,299.00" is 1299, "１００%" is 100, "100 ml" and "100ml" are
the same 100. SmolLM2 writes "He's about 2 lbs.", "up to 28 passengers", "62% of the price": an
invented size, weight, count, discount or warranty is worse than no text.

Units: a number the text gives a unit ("2 lbs", "100 ml", "5 years") is grounded by the same
number in the facts when the facts give it bare or with the same unit; "2 kg" in the facts does
not ground "2 lbs" (no conversions: a page states the row's own figure), and "5 cm" does not
ground "5 years". Units are normalised (``UNITS``: "lbs", "pounds" and "lb" are one unit). An
ordinal needs the ordinal: "12 pencils" does not ground "a 12th-grade project", "30th Birthday"
grounds "30th". Numbers written as words ("three") are not checked. A review digest may state a
rating "of 5": when the facts hold ratings, 5 is grounded.

``price`` stays a check of its own (``price_mismatch``): it knows currencies; this one knows
only that a number is not in the row.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable

from pdgen_core.guardrails._text import normalise
from pdgen_core.guardrails.context import GuardContext
from pdgen_core.guardrails.price import readings

# Digits with "." or "," separators; "5'8\"" is two numbers, "30-40" is two numbers.
_NUMBER = re.compile(r"(?<![\d.,])\d+(?:[.,]\d+)*")
# Spelling -> unit.
UNITS = {
    **dict.fromkeys(("mm", "millimeter", "millimeters", "millimetre", "millimetres"), "mm"),
    **dict.fromkeys(("cm", "centimeter", "centimeters", "centimetre", "centimetres"), "cm"),
    **dict.fromkeys(("m", "meter", "meters", "metre", "metres"), "m"),
    **dict.fromkeys(("inch", "inches", '"', "″"), "in"),
    **dict.fromkeys(("ft", "foot", "feet", "'", "′"), "ft"),
    **dict.fromkeys(("g", "gm", "gms", "gram", "grams"), "g"),
    **dict.fromkeys(("kg", "kgs", "kilo", "kilos", "kilogram", "kilograms"), "kg"),
    **dict.fromkeys(("lb", "lbs", "pound", "pounds"), "lb"),
    **dict.fromkeys(("oz", "ounce", "ounces"), "oz"),
    **dict.fromkeys(("ml", "milliliter", "milliliters", "millilitre", "millilitres"), "ml"),
    **dict.fromkeys(("l", "liter", "liters", "litre", "litres", "ltr"), "l"),
    **dict.fromkeys(("%", "percent", "per cent"), "%"),
    **dict.fromkeys(("year", "years", "yr", "yrs"), "year"),
    **dict.fromkeys(("month", "months"), "month"),
    **dict.fromkeys(("mah",), "mah"), **dict.fromkeys(("watt", "watts"), "w"),
    **dict.fromkeys(("volt", "volts"), "v"), **dict.fromkeys(("gb",), "gb"),
    **dict.fromkeys(("tb",), "tb"),
}
_UNIT_AFTER = re.compile(
    r"\s?(" + "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True)) + r")(?![A-Za-z])",
    re.IGNORECASE)
_ORDINAL = re.compile(r"(?:st|nd|rd|th)(?![A-Za-z])", re.IGNORECASE)
RATING_SCALE = 5.0


def _key(v: float) -> float:
    return round(v, 4)


def stated_numbers(text: str) -> list[tuple[str, set[float], str | None]]:
    """(as written, every plausible value, unit or None) for each number in ``text``; the unit
    normalised (``UNITS``), ``ordinal`` for "3rd"."""
    text = normalise(text)
    out = []
    for m in _NUMBER.finditer(text):
        unit = _UNIT_AFTER.match(text, m.end())
        kind = UNITS[unit.group(1).lower()] if unit else None
        if _ORDINAL.match(text, m.end()):
            kind = "ordinal"
        out.append((m.group(), {_key(v) for v in readings(m.group())}, kind))
    return out


def row_numbers(value: Any) -> dict[float, set[str | None]]:
    """Every number a row value states -> the units it is stated with (``None``: bare).
    Strings give every reading; numbers are also rounded to one and two decimals, as templates
    show them; lists and dicts are walked."""
    out: dict[float, set[str | None]] = {}

    def add(v: float, kind: str | None) -> None:
        out.setdefault(v, set()).add(kind)

    def walk(v: Any) -> None:
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, (int, float)):
            if math.isfinite(v):
                for x in {_key(v), _key(round(v, 1)), _key(round(v, 2))}:
                    add(x, None)
        elif isinstance(v, str):
            for _, values, kind in stated_numbers(v):
                for x in values:
                    add(x, kind)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(value)
    return out


def ungrounded(texts: Iterable[str], allowed: dict[float, set[str | None]]) -> str | None:
    """The first number in ``texts`` that ``allowed`` does not ground, as written; ``None`` if
    all are grounded. A number with a unit needs the same value bare or with a unit of its kind."""
    for text in texts:
        for written, values, kind in stated_numbers(text):
            kinds = set().union(*(allowed.get(v, set()) for v in values))
            strict = kind == "ordinal" or None not in kinds   # "12th grade" is not "12 pencils"
            if not kinds or (kind is not None and strict and kind not in kinds):
                return written
    return None


def allowed_numbers(ctx: GuardContext) -> dict[float, set[str | None]]:
    """The numbers a text for this row may state."""
    allowed = row_numbers([ctx.fields, ctx.title, ctx.brand, ctx.price])
    if "avg_rating" in ctx.fields or "reviews" in ctx.fields:
        allowed.setdefault(RATING_SCALE, set()).add(None)
    return allowed


def check_ungrounded_number(text: str, ctx: GuardContext) -> str | None:
    """``ungrounded_number`` when the text states a number (with its unit) the row does not."""
    return "ungrounded_number" if ungrounded([text], allowed_numbers(ctx)) is not None else None
