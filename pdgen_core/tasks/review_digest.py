"""``review_digest``: a summary of a product's real customer reviews (pros, cons, overall
sentiment), grounded only in those reviews. pdgen never writes fake reviews: the prompt asks for a
summary, ``parse`` rejects a text written as a customer ("I love it", "我买了"), and ``label``
says how a consumer must present it.

Rows carry ``reviews`` (up to 20 dicts ``{"text", "rating"}``, PII already scrubbed),
``review_count`` and ``avg_rating``, joined by the pipeline; rows under ``reviews.min_reviews`` are
skipped there with ``too_few_reviews``.
"""

from __future__ import annotations

import re

from pdgen_core.tasks.base import Task
from pdgen_core.tasks.checks import GroundNumbers

# A digest speaks about reviewers, never as one: first-person singular is a fake review's voice.
# "I" in any case but not the "i" of "i.e."; "我" but not "我们" (we) or "自我" (self).
_FIRST_PERSON = re.compile(
    r"\bI\b|(?<![\w.])i(?![\w.])|\b(?i:me|my|mine|myself)\b|(?<!自)我(?!们)"
)


def parse(text: str) -> str | None:
    """``first_person_review`` when the text speaks as a customer."""
    return "first_person_review" if _FIRST_PERSON.search(text) else None


TASK = Task(
    name="review_digest",
    version="1",
    fields=("title", "brand", "reviews", "review_count", "avg_rating"),
    sampling={"temperature": 0.3, "max_tokens": 160},
    # The chat format (instruct models): cooler, with a light repetition penalty.
    chat_sampling={"temperature": 0.2, "top_p": 0.9, "repetition_penalty": 1.05, "max_tokens": 128},
    guardrails=("truncated", "length", "language", "meta", "echo", "degenerate", "repetition", "injection", "pii",
                "banned", "names", "attributes.mismatch"),
    needs_reviews=True,
    parse=parse,
    ground=GroundNumbers(extra=(5,)),  # "4.5 of 5": the rating scale is not in the row
    label={"en": "Summary of customer reviews", "zh": "顾客评价摘要"},
)
