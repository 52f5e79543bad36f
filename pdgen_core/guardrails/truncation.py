"""Texts cut by ``max_tokens``: keep the complete sentences, or reject the text as ``truncated``.

SmolLM2-135M-Instruct with a 96-token limit stopped mid-sentence in 58 of 60 zero-shot answers
(README, "Notes from building it"). A page cannot publish "..., has a trolley with a retractable handle o". The guard
stage trims such a text to its last complete sentence (``trim_to_sentence``) and judges what is
left like any other text (the length check then refuses a stub); a cut text with no complete
sentence is rejected here.
"""

from __future__ import annotations

import re

from pdgen_core.guardrails.context import GuardContext

# A sentence ends at ".!?" (and closing quotes or brackets) before whitespace or the end of the
# text, not inside "12.5" or "e.g.x"; or at a Chinese full stop, exclamation or question mark.
_END = re.compile(r"(?<!\b[A-Za-z])(?<!\be\.g)(?<!\bi\.e)[.!?]+[\"'”’)\]]*(?=\s|$)|[。！？]+[”’」）]*")


def trim_to_sentence(text: str, locale: str = "en") -> str | None:
    """``text`` up to the end of its last complete sentence; ``None`` when it has none."""
    ends = [m.end() for m in _END.finditer(text)]
    return text[: ends[-1]].rstrip() if ends else None


def check_truncated(text: str, ctx: GuardContext) -> str | None:
    """``truncated`` when the engine cut the text at ``max_tokens`` and no complete sentence of
    it was kept (the guard stage passes ``finish_reason`` "stop" for a trimmed text)."""
    return "truncated" if ctx.finish_reason == "length" else None
