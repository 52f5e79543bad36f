"""The assistant speaking instead of the product copy: ``meta_text``.

An instruct model wraps or replaces the copy with talk: refusals ("As an AI language model, I
cannot..."), preambles ("Sure! Here is a description of the shirt:"), offers and sign-offs ("I
hope this helps", "Let me know if you need changes", "I'm thrilled to help"). Published as-is
such text is the "refusal message as the product text" that got AI listings pulled. Product copy
does not speak as "I" about itself, so the phrases below are narrow and in the first person or
addressed to the requester; a review digest's own first-person check is separate.
"""

from __future__ import annotations

import re

from pdgen_core.guardrails._text import normalise
from pdgen_core.guardrails.context import GuardContext

_WORK = (r"(?:description|blurb|post|copy|faq|faqs|summary|digest|recommendation|headline|ad|"
         r"version|draft|text|caption|tweet|answer|response|rewrite|example|suggestion)s?")
_PHRASES = [
    r"\bas an? (?:ai|artificial intelligence|language model|assistant|chatbot)\b",
    r"\b(?:ai|large) language model\b",
    r"\bI (?:cannot|can't|can not|am unable|'m unable|am not able|won't|will not|don't have|do not have)\b",
    r"\bI(?:'m| am) (?:sorry|happy|glad|thrilled|excited|delighted|here|afraid)\b",
    r"\bI(?:'d| would) (?:be happy|be glad|love to|suggest|recommend)\b",
    r"\b(?:I hope|hope) (?:this|that|you) (?:helps?|find|like|enjoy)",
    r"\blet me know\b", r"\bfeel free to\b", r"\bhappy to help\b", r"\bglad to help\b",
    r"\bas requested\b", r"\byou asked\b", r"\byour request\b",
    r"^\W*(?:sure|certainly|of course|absolutely|okay|ok|great question)\b\s*[!,.:]",
    rf"\bhere(?:'s| is| are)\b[^.!?\n]{{0,40}}\b{_WORK}\b",
    rf"\b(?:this|the following|below is|above is)\s+(?:product\s+)?{_WORK}"
    r"\s+(?:is|was|uses|follows|highlights)\b",
    r"^\W*(?:note|disclaimer|output|answer|response)\s*:",
    r"\b(?:i'?ve|i have) (?:written|created|crafted|kept|included|made)\b",
    # shop-page boilerplate instead of copy (SmolLM2 on held-out Amazon rows, 2026-12-01: "This item
    # has been added to your cart successfully.", "This is a great product to buy!")
    r"\b(?:added|add it|add this) to (?:your|the) (?:cart|basket|bag|wishlist)\b",
    r"\bthis is a (?:great|good|nice|perfect) (?:product|item|one) to (?:buy|try|have|get|own)\b",
]
META = re.compile("|".join(f"(?:{p})" for p in _PHRASES), re.IGNORECASE | re.MULTILINE)


def find_meta(text: str) -> list[str]:
    """The assistant-talk phrases in ``text``."""
    return [m.group() for m in META.finditer(normalise(text).replace("’", "'"))]


def check_meta_text(text: str, ctx: GuardContext) -> str | None:
    """``meta_text`` when the text holds a refusal, a preamble or other assistant talk."""
    return "meta_text" if find_meta(text) else None
