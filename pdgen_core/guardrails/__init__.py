"""Guardrails: small pure checks on one generated text. Each returns ``None`` (pass) or a short
snake_case reason; ``run_checks`` returns the first reason in the order asked for.

Tasks name groups (``length``, ``repetition``, ``price``, ``brand``, ``banned``, ``pii``,
``injection``, ``language``, ``facts``, ...) or single members (``pii.url``, ``brand.other``,
``names``, ...)::

    from pdgen_core.guardrails import GuardContext, run_checks
    ctx = GuardContext(locale="zh", brand="李宁", price=299, currency="CNY")
    reason = run_checks(task.guardrails, text, ctx)

The reasons, one module each (set version 2 added the second block, from what SmolLM2-135M-
Instruct gets wrong on real rows; ``tests/corpus/smollm2_labelled.jsonl`` holds labelled examples;
set 3 widened ``attributes``, ``degenerate`` and ``names`` on its misses; set 4 added
``banned.unfit`` and ad_copy's headline cut inside a title word; set 5 judges what a text says a
product "has" against the facts, ``attributes.PARTS``, and calls "a pair of" one thing degenerate):

=====================  ==============  ===================================================
reason                 check           what it catches
=====================  ==============  ===================================================
empty/too_short/long   length          blank, stub or overlong text
truncated              truncated       cut at max_tokens with no complete sentence left
                                       (ad_copy's parse: a field cut at its maxLength)
wrong_language         language        text not in the locale's script
repetition             repetition      a token looping, or mostly repeated n-grams
injection_echo         injection       instruction-like text, or 10 template tokens echoed
pii_email/phone/url    pii             contact details, links outside the allowlist
price_mismatch         price           a price that is not the row's, in its currency
other_brand            brand.other     another catalog brand named
brand_missing          brand.missing   the row's brand not named
banned_term            banned.terms    a term of the spec's banned list
unfit_term             banned.unfit    a word unfit for product copy ("stripper",
                                       profanity, slurs, hard drugs) the row does not
                                       state itself ("wire stripper" passes on its row)
meta_text              meta            refusals and assistant talk ("Sure! Here is...")
prompt_echo            echo            prompt labels, lines or instruction ("Title:"), a
                                       worked example's answer copied
degenerate             degenerate      glued words ("navyA", "MeetThis"), short loops,
                                       doubled words ("men's men"), repeated phrases,
                                       clauses and words, non-words
ungrounded_number      numbers         a number (with its unit) the row does not state
ungrounded_name        names           a person, place, retailer, brand or model not in
                                       the row ("Ahlya Sterling", "Amazon", "French"), the
                                       row's brand respelt ("big jigs", "street nine")
attribute_mismatch     attributes      a colour, material, gender, product type or claim
                                       the row contradicts or does not give ("red" for
                                       black, "bag" for a bra, "handmade", "the finest",
                                       "for all sizes", "a beach theme", "thin" for thick);
                                       product copy that never names the title's type
                                       ("women's workwear" for a watch): ``attributes`` is
                                       ``attributes.mismatch`` + ``attributes.product``
=====================  ==============  ===================================================

An unknown name raises ``KeyError`` (a broken task definition, not a bad row). Bump
``GUARDRAIL_SET_VERSION`` whenever any check changes what it accepts: it is part of every content
fingerprint, so a change regenerates the content it would now judge differently.
"""

from __future__ import annotations

from typing import Sequence

from pdgen_core.guardrails.attributes import check_attribute_mismatch, check_product_named
from pdgen_core.guardrails.context import Check, GuardContext
from pdgen_core.guardrails.degenerate import check_degenerate
from pdgen_core.guardrails.echo import check_prompt_echo
from pdgen_core.guardrails.injection import check_injection
from pdgen_core.guardrails.language import check_language
from pdgen_core.guardrails.length import check_length
from pdgen_core.guardrails.meta import check_meta_text
from pdgen_core.guardrails.names import check_ungrounded_name
from pdgen_core.guardrails.numbers import check_ungrounded_number
from pdgen_core.guardrails.pii import check_email, check_phone, check_url
from pdgen_core.guardrails.price import check_price
from pdgen_core.guardrails.repetition import check_repetition
from pdgen_core.guardrails.terms import check_banned, check_brand_missing, check_other_brand, check_unfit
from pdgen_core.guardrails.truncation import check_truncated

GUARDRAIL_SET_VERSION = "8"

MEMBERS: dict[str, Check] = {
    "truncated": check_truncated,
    "length": check_length,
    "repetition": check_repetition,
    "price": check_price,
    "brand.other": check_other_brand,
    "brand.missing": check_brand_missing,
    "banned.terms": check_banned,
    "banned.unfit": check_unfit,
    "pii.email": check_email,
    "pii.phone": check_phone,
    "pii.url": check_url,
    "injection": check_injection,
    "language": check_language,
    "meta": check_meta_text,
    "echo": check_prompt_echo,
    "degenerate": check_degenerate,
    "numbers": check_ungrounded_number,
    "names": check_ungrounded_name,
    "attributes.mismatch": check_attribute_mismatch,
    "attributes.product": check_product_named,
}
# Every reason a check can return, for counting and for the rejects table's documentation.
REASONS = frozenset({
    "empty", "too_short", "too_long", "repetition", "price_mismatch", "other_brand", "brand_missing",
    "banned_term", "pii_email", "pii_phone", "pii_url", "injection_echo", "wrong_language",
    "truncated", "meta_text", "prompt_echo", "degenerate", "ungrounded_number", "ungrounded_name",
    "attribute_mismatch", "unfit_term",
})


def _group(names: tuple[str, ...]) -> Check:
    def check(text: str, ctx: GuardContext) -> str | None:
        return run_checks(names, text, ctx)
    check.__doc__ = "The checks " + ", ".join(names) + ", in that order."
    return check


GROUPS: dict[str, tuple[str, ...]] = {
    "brand": ("brand.other", "brand.missing"),
    # The spec's banned list, then the built-in list of words unfit for product copy.
    "banned": ("banned.terms", "banned.unfit"),
    "pii": ("pii.email", "pii.phone", "pii.url"),
    # Product copy must also say what the product is; FAQs and review digests run the mismatch
    # check alone.
    "attributes": ("attributes.mismatch", "attributes.product"),
    # What the row states: numbers, names, attributes (each needs ``GuardContext.fields``).
    "facts": ("numbers", "names", "attributes"),
    # Form first (what a reader sees at once), then leaks, then facts.
    "all": ("truncated", "length", "language", "meta", "echo", "degenerate", "repetition", "injection",
            "pii", "price", "brand", "banned", "facts"),
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
