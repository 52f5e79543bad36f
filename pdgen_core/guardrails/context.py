"""What a check may know about the row besides the generated text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class GuardContext:
    """The facts of one (row, task, locale) that the checks compare the output with."""

    locale: str = "en"                            # "en" or "zh"
    title: str | None = None
    brand: str | None = None
    price: float | None = None
    currency: str = "USD"                         # ISO 4217
    known_brands: frozenset[str] = frozenset()    # every brand in the catalog ("no other brand named")
    banned_terms: tuple[str, ...] = ()
    url_allowlist: tuple[str, ...] = ()           # domains allowed in outputs (subdomains too)
    input_texts: tuple[str, ...] = ()             # raw input field values (for injection echo)
    system_prompt: str = ""                       # the prompt template text (for instruction echo)
    min_chars: int = 20
    max_chars: int = 2000
    fields: dict = field(default_factory=dict)    # the row's values for the task's fields (facts)
    finish_reason: str = "stop"                   # "length": the engine cut the text at max_tokens


# A check returns None when the text passes, else a short snake_case reason.
Check = Callable[[str, GuardContext], "str | None"]
