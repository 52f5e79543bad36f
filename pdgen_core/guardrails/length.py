"""Length checks: ``empty``, ``too_short``, ``too_long`` (characters of the stripped text)."""

from __future__ import annotations

from pdgen_core.guardrails.context import GuardContext


def check_length(text: str, ctx: GuardContext) -> str | None:
    """Blank text is ``empty``; otherwise the stripped length must lie in [min_chars, max_chars]."""
    n = len(text.strip())
    if n == 0:
        return "empty"
    if n < ctx.min_chars:
        return "too_short"
    if n > ctx.max_chars:
        return "too_long"
    return None
