"""``social_post``: a short social media post with at most 3 hashtags."""

from __future__ import annotations

import re
import unicodedata

from pdgen_core.tasks.base import Task
from pdgen_core.tasks.checks import GroundNumbers

MAX_HASHTAGS = 3
MAX_CHARS = 280   # a post must fit the shortest common limit (X/Twitter)
# "#tag" or Weibo's "#话题#"; not an HTML entity ("&#39;"). NFKC turns "＃" into "#".
_HASHTAG = re.compile(r"(?<![&\w])#[^\s#]+#?")


def hashtags(text: str) -> list[str]:
    return _HASHTAG.findall(unicodedata.normalize("NFKC", text))


def parse(text: str) -> str | None:
    """``too_many_hashtags`` beyond 3; ``post_too_long`` beyond 280 characters."""
    if len(hashtags(text)) > MAX_HASHTAGS:
        return "too_many_hashtags"
    return "post_too_long" if len(text.strip()) > MAX_CHARS else None


TASK = Task(
    name="social_post",
    version="1",
    fields=("title", "brand", "price", "category", "color", "material", "attributes"),
    sampling={"temperature": 0.9, "max_tokens": 96},
    # The chat format (instruct models): cooler, with a light repetition penalty.
    chat_sampling={"temperature": 0.4, "top_p": 0.9, "repetition_penalty": 1.05, "max_tokens": 80},
    guardrails=("truncated", "length", "language", "meta", "echo", "degenerate", "repetition", "injection", "pii",
                "price", "brand.other", "banned", "names", "attributes"),
    parse=parse,
    ground=GroundNumbers(),
)
