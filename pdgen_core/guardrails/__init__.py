"""Guardrails: small pure checks on one generated text. Each returns ``None`` (pass) or a short
snake_case reason; ``run_checks`` returns the first reason in the order asked for.

Tasks name groups (``length``, ``repetition``, ``price``, ``brand``, ``banned``, ``pii``,
``injection``, ``language``) or single members (``pii.url``, ``brand.other``, ...)::

    from pdgen_core.guardrails import GuardContext, run_checks
    ctx = GuardContext(locale="zh", brand="李宁", price=299, currency="CNY")
    reason = run_checks(task.guardrails, text, ctx)

An unknown name raises ``KeyError`` (a broken task definition, not a bad row). Bump
``GUARDRAIL_SET_VERSION`` whenever any check changes what it accepts: it is part of every content
fingerprint, so a change regenerates the content it would now judge differently.
"""

from __future__ import annotations

from typing import Sequence

from pdgen_core.guardrails.context import Check, GuardContext
from pdgen_core.guardrails.injection import check_injection
from pdgen_core.guardrails.language import check_language
from pdgen_core.guardrails.length import check_length
from pdgen_core.guardrails.pii import check_email, check_phone, check_url
from pdgen_core.guardrails.price import check_price
from pdgen_core.guardrails.repetition import check_repetition
from pdgen_core.guardrails.terms import check_banned, check_brand_missing, check_other_brand
from pdgen_core.guardrails.truncation import check_truncated

GUARDRAIL_SET_VERSION = "1"

MEMBERS: dict[str, Check] = {
    "truncated": check_truncated,
    "length": check_length,
    "repetition": check_repetition,
    "price": check_price,
    "brand.other": check_other_brand,
    "brand.missing": check_brand_missing,
    "banned": check_banned,
    "pii.email": check_email,
    "pii.phone": check_phone,
    "pii.url": check_url,
    "injection": check_injection,
    "language": check_language,
}
# Every reason a check can return, for counting and for the rejects table's documentation.
REASONS = frozenset({
    "empty", "too_short", "too_long", "repetition", "price_mismatch", "other_brand", "brand_missing",
    "banned_term", "pii_email", "pii_phone", "pii_url", "injection_echo", "wrong_language",
    "truncated",
})


def _group(names: tuple[str, ...]) -> Check:
    def check(text: str, ctx: GuardContext) -> str | None:
        return run_checks(names, text, ctx)
    check.__doc__ = "The checks " + ", ".join(names) + ", in that order."
    return check


GROUPS: dict[str, tuple[str, ...]] = {
    "brand": ("brand.other", "brand.missing"),
    "pii": ("pii.email", "pii.phone", "pii.url"),
    "all": ("truncated", "length", "language", "repetition", "injection", "pii", "price", "brand", "banned"),
}
CHECKS: dict[str, Check] = {**MEMBERS, **{name: _group(members) for name, members in GROUPS.items()}}


def run_checks(names: Sequence[str], text: str | None, ctx: GuardContext) -> str | None:
    """The first failing reason among ``names``, in order; ``None`` when all pass.
    ``None`` text counts as empty."""
    text = text or ""
    for name in names:
        try:
            check = CHECKS[name]
        except KeyError:
            raise KeyError(f"unknown guardrail {name!r}; known: {', '.join(sorted(CHECKS))}") from None
        reason = check(text, ctx)
        if reason:
            return reason
    return None


def unknown_checks(names: Sequence[str]) -> list[str]:
    """The names that are not guardrails, for validating a task or spec up front."""
    return [n for n in names if n not in CHECKS]


__all__ = [
    "CHECKS", "GROUPS", "GUARDRAIL_SET_VERSION", "REASONS", "Check", "GuardContext",
    "run_checks", "unknown_checks",
]
