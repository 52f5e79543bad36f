"""``blurb``: one or two sentences recommending a product to one audience segment. One variant
per segment in the spec's ``segments`` (default one generic segment, ``general``)."""

from __future__ import annotations

import re
from typing import Any

from pdgen_core.tasks.base import Task
from pdgen_core.tasks.checks import GroundNumbers

MAX_SENTENCES = 2
# A sentence ends at ".!?" followed by a space and a capital or quote (so "12.5" and "e.g. a"
# do not end one), or at a Chinese full stop, exclamation or question mark.
_SENTENCE_END = re.compile(r"[.!?]+(?=\s+[A-Z\"'“‘(])|[。！？]+(?=.)")


def segments(spec: Any) -> tuple[str, ...]:
    """The spec's segments, stripped, blanks and repeats dropped; ``("general",)`` when none."""
    names = (str(s).strip() for s in (getattr(spec, "segments", None) or ()))
    return tuple(dict.fromkeys(n for n in names if n)) or ("general",)


def parse(text: str) -> str | None:
    """``too_many_sentences`` beyond two sentences."""
    return "too_many_sentences" if len(_SENTENCE_END.findall(text.strip())) >= MAX_SENTENCES else None


TASK = Task(
    name="blurb",
    version="1",
    fields=("title", "brand", "price", "category", "color", "material", "gender", "attributes"),
    sampling={"temperature": 0.8, "max_tokens": 60},
    # The chat format (instruct models): cooler, with a light repetition penalty.
    chat_sampling={"temperature": 0.3, "top_p": 0.9, "repetition_penalty": 1.05, "max_tokens": 48},
    guardrails=("truncated", "length", "language", "meta", "echo", "degenerate", "repetition", "injection", "pii",
                "price", "brand", "banned", "names", "attributes"),
    parse=parse,
    ground=GroundNumbers(),
    variants=segments,
)
