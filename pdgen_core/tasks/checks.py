"""Output checks that tasks share: loading a JSON object, and grounding numbers in the row.

Number grounding lives in ``pdgen_core.guardrails.numbers`` (the ``numbers`` guardrail,
``ungrounded_number``): every number an output states must be a number the row states, with a
unit of the same kind when it has one. ``GroundNumbers`` is the same check as a ``Task.ground``
hook, which receives the row's fields directly; ``faq`` uses the functions per pair.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from pdgen_core.guardrails.numbers import row_numbers, stated_numbers, ungrounded
from pdgen_core.tasks.base import json_strings

__all__ = ["GroundNumbers", "load_object", "row_numbers", "stated_numbers", "ungrounded_number"]


def load_object(text: str) -> tuple[dict | None, str | None]:
    """``(obj, None)`` when ``text`` is one JSON object, else ``(None, reason)``:
    ``invalid_json`` when it does not parse, ``schema_mismatch`` when it is not an object."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None, "invalid_json"
    return (obj, None) if isinstance(obj, dict) else (None, "schema_mismatch")


def ungrounded_number(texts: Iterable[str], allowed: dict[float, set[str | None]]) -> str | None:
    """The first number in ``texts`` that ``allowed`` (``row_numbers``) does not ground, as
    written; ``None`` if all are."""
    return ungrounded(texts, allowed)


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
        allowed = row_numbers(fields)
        for x in self.extra:
            allowed.setdefault(round(float(x), 4), set()).add(None)
        return self.reason if ungrounded(texts, allowed) is not None else None
