"""Output checks that tasks share: loading a JSON object, and grounding numbers in the row.

Number grounding is deliberately blunt: every number an output states must be a number the row
states (in any field the task reads, the price included), read tolerantly ("1,299.00" is 1299,
"１００%" is 100). An output that invents a size, a discount, a warranty or a pack count is worse
than no output. Numbers written as words ("three", "三") are not checked.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable

from pdgen_core.guardrails.price import readings
from pdgen_core.tasks.base import json_strings

# Digits with "." or "," separators; "5'8\"" is two numbers, "30-40" is two numbers.
_NUMBER = re.compile(r"(?<![\d.,])\d+(?:[.,]\d+)*")


def load_object(text: str) -> tuple[dict | None, str | None]:
    """``(obj, None)`` when ``text`` is one JSON object, else ``(None, reason)``:
    ``invalid_json`` when it does not parse, ``schema_mismatch`` when it is not an object."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None, "invalid_json"
    return (obj, None) if isinstance(obj, dict) else (None, "schema_mismatch")


def _key(v: float) -> float:
    return round(v, 4)


def stated_numbers(text: str) -> list[tuple[str, set[float]]]:
    """(as written, every plausible value) for each number in ``text``."""
    text = unicodedata.normalize("NFKC", text)
    return [(m.group(), {_key(v) for v in readings(m.group())}) for m in _NUMBER.finditer(text)]


def row_numbers(value: Any) -> set[float]:
    """Every number a row value states: in its strings (every reading) and as numbers (also
    rounded to one and two decimals, as templates show them), through lists and dicts."""
    if isinstance(value, bool) or value is None:
        return set()
    if isinstance(value, (int, float)):
        return {_key(value), _key(round(value, 1)), _key(round(value, 2))} if math.isfinite(value) else set()
    if isinstance(value, str):
        return set().union(*(vals for _, vals in stated_numbers(value)))
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return set().union(*(row_numbers(v) for v in value))
    return set()


def ungrounded_number(texts: Iterable[str], allowed: set[float]) -> str | None:
    """The first number in ``texts`` none of whose readings is in ``allowed``; ``None`` if all are."""
    for text in texts:
        for written, values in stated_numbers(text):
            if not values & allowed:
                return written
    return None


@dataclass(frozen=True)
class GroundNumbers:
    """A ``Task.ground`` hook: ``reason`` when the output states a number the row does not.
    ``extra`` numbers are allowed as well (a rating scale's 5). With ``json_output`` the string
    values of the JSON are checked, not its text (an escape such as ``\\u4e2d`` holds digits);
    an output that does not parse passes here, as ``parse`` has rejected it. A class rather than
    a closure so that a task pickles."""

    reason: str = "ungrounded_number"
    extra: tuple[float, ...] = ()
    json_output: bool = False

    def __call__(self, text: str, fields: dict[str, Any]) -> str | None:
        texts = [text]
        if self.json_output:
            try:
                texts = json_strings(json.loads(text))
            except (ValueError, RecursionError):
                return None
        allowed = row_numbers(fields) | {_key(float(x)) for x in self.extra}
        return self.reason if ungrounded_number(texts, allowed) is not None else None
