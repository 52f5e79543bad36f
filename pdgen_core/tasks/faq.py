"""``faq``: 3 to 5 question/answer pairs as JSON ``{"faqs": [{"q": ..., "a": ...}]}``, grounded
in the row: ``ground`` rejects a pair that states a number the row does not state."""

from __future__ import annotations

from typing import Any

from pdgen_core.tasks.base import Task
from pdgen_core.tasks.checks import load_object, row_numbers, ungrounded_number

MIN_FAQS, MAX_FAQS = 3, 5
Q_MAX, A_MAX = 120, 300
SCHEMA = {
    "type": "object",
    "properties": {
        "faqs": {
            "type": "array",
            "minItems": MIN_FAQS,
            "maxItems": MAX_FAQS,
            "items": {
                "type": "object",
                "properties": {
                    "q": {"type": "string", "minLength": 1, "maxLength": Q_MAX},
                    "a": {"type": "string", "minLength": 1, "maxLength": A_MAX},
                },
                "required": ["q", "a"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["faqs"],
    "additionalProperties": False,
}


def _pairs(obj: dict) -> list | None:
    """The pairs when the object has SCHEMA's shape (counts and lengths aside), else None."""
    faqs = obj.get("faqs") if set(obj) == {"faqs"} else None
    if not isinstance(faqs, list):
        return None
    ok = all(isinstance(p, dict) and set(p) == {"q", "a"} and all(isinstance(v, str) for v in p.values())
             for p in faqs)
    return faqs if ok else None


def _is_question(q: str) -> bool:
    return q.rstrip().endswith(("?", "？"))


def parse(text: str) -> str | None:
    """``invalid_json``; ``schema_mismatch`` (shape or extra keys); ``faq_count`` (not 3-5
    pairs); ``empty_field`` (a blank q or a); ``faq_too_long``; ``duplicate_question``;
    ``not_a_question`` (a q that does not end in a question mark: "I am not sure about that,";
    a one-word answer passes ("Cotton." is a fine answer to "What is it made of?")."""
    obj, reason = load_object(text)
    if reason:
        return reason
    pairs = _pairs(obj)
    if pairs is None:
        return "schema_mismatch"
    if not MIN_FAQS <= len(pairs) <= MAX_FAQS:
        return "faq_count"
    if any(not p["q"].strip() or not p["a"].strip() for p in pairs):
        return "empty_field"
    if any(len(p["q"]) > Q_MAX or len(p["a"]) > A_MAX for p in pairs):
        return "faq_too_long"
    if len({" ".join(p["q"].casefold().split()) for p in pairs}) < len(pairs):
        return "duplicate_question"
    if not all(_is_question(p["q"]) for p in pairs):
        return "not_a_question"
    return None


def ground(text: str, fields: dict[str, Any]) -> str | None:
    """``ungrounded_answer`` (or ``ungrounded_question``) when a pair states a number that no field
    of the row states ("machine wash at 30°" with no 30 in the row). Text that does not parse
    passes here: ``parse`` has rejected it."""
    obj, reason = load_object(text)
    pairs = None if reason else _pairs(obj)
    allowed = row_numbers(fields)
    for p in pairs or ():
        if ungrounded_number([p["a"]], allowed) is not None:
            return "ungrounded_answer"
        if ungrounded_number([p["q"]], allowed) is not None:
            return "ungrounded_question"
    return None


TASK = Task(
    name="faq",
    version="1",
    fields=("title", "brand", "price", "category", "color", "material", "gender", "attributes"),
    output="json",
    json_schema=SCHEMA,
    sampling={"temperature": 0.5, "max_tokens": 320},
    # The chat format (instruct models): cooler, with a light repetition penalty.
    chat_sampling={"temperature": 0.2, "top_p": 0.9, "repetition_penalty": 1.05, "max_tokens": 256},
    guardrails=("truncated", "length", "language", "meta", "echo", "degenerate", "repetition", "injection", "pii",
                "price", "brand.other", "banned", "names", "attributes.mismatch"),
    stop=(),
    parse=parse,
    ground=ground,
)
