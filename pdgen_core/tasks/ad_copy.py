"""``ad_copy``: a headline (at most 30 characters) and a body (at most 90) as JSON. The engine
decodes with ``SCHEMA`` (guided decoding); ``parse`` enforces the same contract on the text, so
an engine without structured output, or a truncated string, is a reject with its reason."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pdgen_core.guardrails.words import is_word
from pdgen_core.tasks.base import Task
from pdgen_core.tasks.checks import GroundNumbers, load_object

HEADLINE_MAX = 30
BODY_MAX = 90
SCHEMA = {
    "type": "object",
    "properties": {
        "headline": {"type": "string", "maxLength": HEADLINE_MAX},
        "body": {"type": "string", "maxLength": BODY_MAX},
    },
    "required": ["headline", "body"],
    "additionalProperties": False,
}


def cut_at_limit(value: str, limit: int, sentence: bool) -> bool:
    """Whether guided decoding cut ``value`` at its ``maxLength``: it fills the limit and ends
    inside a word ("Avengers EndeG", "Strang'") or, for a ``sentence`` field, without a full
    stop ("... featuring a custom-made"). Judged on English only: a value ending in another
    script passes."""
    if len(value) < limit:
        return False
    tail = value.rstrip()
    if not tail or not tail[-1].isascii():   # a Chinese body has no spaces to cut inside of
        return False
    if sentence and not tail.endswith((".", "!", "?")):
        return True
    m = re.search(r"[A-Za-z]+$", tail)
    return not tail[-1:].isalnum() and tail[-1:] not in ".!?)\"" or bool(m and not is_word(m.group().lower()))


# Words a phrase cannot end on: a headline that does ("Northwind Unisex Headphones at", "A graphic
# design jacket for a ", "A tent made of wool that can't") was cut at its maxLength after a whole
# word (demo, 2026-12-01).
DANGLING = frozenset("a an the and or but for with of on at to in by from your its our their as "
                     "is are was were be been has have had this that can can't cannot will won't "
                     "would should could may might must not".split())


def dangles(value: str) -> bool:
    """The phrase stops mid-way: on a word it cannot end on, or on a comma, colon or dash."""
    tail = value.rstrip()
    if tail.endswith((",", ";", ":", "-", "–", "&")):
        return True
    words = re.findall(r"[A-Za-z']+", tail[-12:])
    return bool(words) and tail[-1:].isalpha() and words[-1].lower() in DANGLING


def cut_in_a_row_word(headline: str, fields: dict[str, Any]) -> bool:
    """Whether a headline that fills its limit ends on the start of one of the row's own words
    ("Raymond Men Maroon Striped Col" for a "... Striped Collar ..." title, "Baby Doll Bedding
    Chevron Wind" for "... Window ..."), on a two-letter fragment that is no row word ("... Leo
    the LY"), or between two words: guided decoding cut it after letters that happen to spell a
    word, so ``cut_at_limit`` cannot see it without the row."""
    if len(headline) < HEADLINE_MAX - 1:
        return False
    if len(headline) >= HEADLINE_MAX and headline[-1:].isspace():
        return True    # the limit fell between two words: "SunWorks PAC6525 Construction "
    m = re.search(r"([A-Za-z]+)\W*$", headline)
    if not m:
        return False
    last = m.group(1).lower()
    words = {w.lower() for v in fields.values() if isinstance(v, str) for w in re.findall(r"[A-Za-z]+", v)}
    if last in words:
        return False
    # a row word begun, or a fragment of two letters no row word is ("Henry & Leo the LY")
    return any(w.startswith(last) and len(w) > len(last) for w in words) or len(last) <= 2


@dataclass(frozen=True)
class AdCopyGround:
    """``ground``: the numbers check on the JSON's strings, then ``truncated`` for a headline cut
    inside one of the row's words (``cut_in_a_row_word``)."""

    numbers: GroundNumbers = GroundNumbers(json_output=True)

    def __call__(self, text: str, fields: dict[str, Any]) -> str | None:
        reason = self.numbers(text, fields)
        if reason:
            return reason
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return None
        headline = obj.get("headline") if isinstance(obj, dict) else None
        return "truncated" if isinstance(headline, str) and cut_in_a_row_word(headline, fields) else None


def parse(text: str) -> str | None:
    """``invalid_json``; ``schema_mismatch`` (not an object, keys other than exactly headline and
    body, a value not a string); ``empty_field``; ``headline_too_long``; ``body_too_long``;
    ``truncated`` (a field cut at its limit by guided decoding, see ``cut_at_limit``, or one that
    stops mid-phrase, see ``dangles``); ``body_repeats_headline`` (the body says the headline
    again and nothing more)."""
    obj, reason = load_object(text)
    if reason:
        return reason
    if set(obj) != {"headline", "body"} or not all(isinstance(v, str) for v in obj.values()):
        return "schema_mismatch"
    if not obj["headline"].strip() or not obj["body"].strip():
        return "empty_field"
    if len(obj["headline"]) > HEADLINE_MAX:
        return "headline_too_long"
    if len(obj["body"]) > BODY_MAX:
        return "body_too_long"
    if cut_at_limit(obj["headline"], HEADLINE_MAX, False) or cut_at_limit(obj["body"], BODY_MAX, True):
        return "truncated"
    if dangles(obj["headline"]) or dangles(obj["body"]):
        return "truncated"
    if _norm(obj["body"]) == _norm(obj["headline"]):
        return "body_repeats_headline"
    return None


def _norm(value: str) -> str:
    return " ".join(re.findall(r"\w+", value.casefold()))


TASK = Task(
    name="ad_copy",
    version="1",
    fields=("title", "brand", "price", "category", "color", "material", "gender", "attributes"),
    output="json",
    json_schema=SCHEMA,
    # About 150 characters of JSON; Chinese takes more tokens per character.
    sampling={"temperature": 0.8, "max_tokens": 96},
    # The chat format (instruct models): cooler, with a light repetition penalty.
    chat_sampling={"temperature": 0.3, "top_p": 0.9, "repetition_penalty": 1.05, "max_tokens": 80},
    guardrails=("truncated", "length", "language", "meta", "echo", "degenerate", "repetition", "injection", "pii",
                "price", "brand.other", "banned", "names", "attributes"),
    stop=(),
    parse=parse,
    ground=AdCopyGround(),
)
