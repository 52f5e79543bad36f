"""What a task is: templates per locale with a version, the fields it reads, its output form,
sampling defaults and its guardrail set. Adding a task is one small module plus templates.

Templates render in a sandboxed Jinja environment. Catalog values go in as data through the
``q`` filter (whitespace-collapsed, length-capped, quoted); they are never evaluated as template
code, so a title of ``{{ 7*7 }}`` stays literal text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Literal

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATES = Path(__file__).parent / "templates"
VALUE_CAP = 400  # characters of one catalog value that reach a prompt


def _q(value: Any, cap: int = VALUE_CAP) -> str:
    """A catalog value as quoted prompt data: one line, capped, quotes escaped."""
    if value is None:
        return '""'
    s = " ".join(str(value).split())
    if len(s) > cap:
        s = s[: cap - 1] + "…"
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _price(value: Any, currency: str) -> str:
    if value is None:
        return "unknown"
    return f"{float(value):,.2f} {currency}"


_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_ENV.filters["q"] = _q
_ENV.filters["price"] = _price


@dataclass(frozen=True)
class Task:
    name: str
    version: str
    fields: tuple[str, ...]                     # row fields the templates read: drive fingerprints
    locales: tuple[str, ...] = ("en",)
    output: Literal["text", "json"] = "text"
    json_schema: dict | None = None
    sampling: dict = field(default_factory=dict)  # task defaults over the spec's sampling
    guardrails: tuple[str, ...] = ("length", "repetition")
    needs_reviews: bool = False
    stop: tuple[str, ...] = ("###",)            # the templates' section marker ends an answer
    parse: Callable[[str], str | None] | None = None  # JSON tasks: None when the text parses

    @property
    def template_id(self) -> str:
        return f"{self.name}/v{self.version}"

    def variants_for(self, spec: Any) -> tuple[str, ...]:
        """Variants per (sku, locale): one unnamed variant unless a task says otherwise."""
        return ("",)

    @cached_property
    def _templates(self) -> dict[str, Any]:
        out = {}
        for loc in self.locales:
            src = (TEMPLATES / f"{self.name}.{loc}.j2").read_text(encoding="utf-8")
            out[loc] = _ENV.from_string(src)
        return out

    def render(self, row: dict[str, Any], locale: str, currency: str = "USD", variant: str = "") -> str:
        """The prompt for one cleaned row. Only ``self.fields`` are visible to the template."""
        data = {f: row.get(f) for f in self.fields}
        text = self._templates[locale].render(row=data, currency=currency, variant=variant)
        return text.strip() + "\n"
