"""What a task is: templates per locale with a version, the fields it reads, its output form,
sampling defaults, its guardrail set and its own output checks. Adding a task is one small module
plus, per locale, a completion template (``templates/<task>.<locale>.j2``) and a chat prompt
(``templates/<task>.<locale>.chat.yaml``).

Two prompt formats (``model.prompt_format``):

- ``completion``: one plain text ("### Product ... ### Description") that the model continues;
  what ``pdgen-tiny`` and the adapters trained on it know.
- ``chat``: for instruct models. The chat YAML holds a system instruction, a user-message
  template and worked examples (each a row of facts and the answer a catalog editor would
  publish). ``messages`` renders them as system, (user, assistant) per example, then the row's
  user message; the model's own chat template turns them into the prompt (``stages/prompt.py``).
  A 135M-parameter model given only an instruction wrote 300-token brand histories ("Bvlgari is a
  French perfumer ... balsamic vinegar"); two worked examples made it write one grounded sentence
  and stop (16 Myntra rows, 2026-12-01).

Templates render in a sandboxed Jinja environment. Catalog values go in as data through the
``q`` filter (whitespace-collapsed, length-capped, quoted); they are never evaluated as template
code, so a title of ``{{ 7*7 }}`` stays literal text. Numbers go through ``n`` and ``price``,
review lists through ``reviews`` (count- and size-capped); nothing else reaches a prompt.

The guard stage judges one output in this order, first reason wins:

1. ``run_checks(task.guardrails, text, ctx)``: the shared guardrails (``pdgen_core.guardrails``);
2. ``task.parse(text)``: the task's own output-form check (JSON structure for JSON tasks; form
   rules such as "at most 3 hashtags" for text tasks);
3. ``task.ground(text, fields)``: facts in the output checked against ``fields``, the row's values
   for ``task.fields`` (the dict the prompt was rendered from).

Each returns ``None`` (pass) or a snake_case reason.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATES = Path(__file__).parent / "templates"
LOCALES = ("en", "zh")
VALUE_CAP = 400   # characters of one catalog value that reach a prompt

Parse = Callable[[str], "str | None"]
Ground = Callable[[str, "dict[str, Any]"], "str | None"]


def _q(value: Any, cap: int = VALUE_CAP) -> str:
    """A catalog value as quoted prompt data: one line, capped, quotes escaped."""
    if value is None:
        return '""'
    s = " ".join(str(value).split())
    if len(s) > cap:
        s = s[: cap - 1] + "…"
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _plain(value: Any, cap: int = VALUE_CAP) -> str:
    """A catalog value as chat prompt data: one line, capped, unquoted (a small chat model copies
    quotes into its answer). One line is what keeps it data: a value cannot start a line of its
    own that would read as an instruction."""
    if value is None:
        return ""
    s = " ".join(str(value).split())
    return s if len(s) <= cap else s[: cap - 1] + "…"


def _price(value: Any, currency: str) -> str:
    if value is None:
        return "unknown"
    return f"{float(value):,.2f} {currency}"


def _n(value: Any, digits: int = 0) -> str:
    """A number as prompt data; anything that is not a finite number is ``?``, never its text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "?"
    return f"{value:.{digits}f}" if digits else str(int(round(value)))


def _reviews(value: Any, limit: int, budget: int, cap: int) -> list[dict]:
    """Reviews as prompt data: those with non-blank text, in order, at most ``limit`` of them,
    each text whitespace-collapsed and capped at ``cap`` characters, their texts adding up to at
    most ``budget`` characters (a prompt must fit the model's context: templates set these)."""
    out, used = [], 0
    for r in value if isinstance(value, (list, tuple)) else ():
        raw = r.get("text") if isinstance(r, dict) else None
        text = " ".join(raw.split()) if isinstance(raw, str) else ""
        if not text:
            continue
        text = text if len(text) <= cap else text[: cap - 1] + "…"
        if len(out) >= limit or used + len(text) > budget:
            break
        out.append({"text": text, "rating": r.get("rating")})
        used += len(text)
    return out


_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_ENV.filters.update(q=_q, plain=_plain, price=_price, n=_n, reviews=_reviews)


@lru_cache(maxsize=None)
def _source(name: str, locale: str) -> str:
    return (TEMPLATES / f"{name}.{locale}.j2").read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _chat_source(name: str, locale: str) -> str:
    return (TEMPLATES / f"{name}.{locale}.chat.yaml").read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _chat(name: str, locale: str) -> dict[str, Any]:
    """The parsed chat prompt: ``system``, ``user`` (a template), ``examples``; checked here so
    that a broken file fails when the task is first used, naming the file."""
    path = TEMPLATES / f"{name}.{locale}.chat.yaml"
    doc = yaml.safe_load(_chat_source(name, locale))
    if not isinstance(doc, dict) or not {"system", "user"} <= set(doc) or set(doc) - {"system", "user", "examples"}:
        raise ValueError(f"{path}: expected the keys system, user and (optionally) examples")
    for i, ex in enumerate(doc.get("examples") or ()):
        if not isinstance(ex, dict) or not {"row", "output"} <= set(ex) or set(ex) - {"row", "output", "variant"}:
            raise ValueError(f"{path}: examples[{i}] needs `row` and `output` (and optionally `variant`)")
    return {"system": str(doc["system"]).strip(), "user": _ENV.from_string(doc["user"]),
            "examples": tuple(doc.get("examples") or ())}


def json_strings(value: Any) -> list[str]:
    """Every string value inside parsed JSON, in document order (keys excluded)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return []


@dataclass(frozen=True)
class Task:
    name: str
    version: str                                # bump when a template changes what it asks
    fields: tuple[str, ...]                     # row fields the templates read: drive fingerprints
    locales: tuple[str, ...] = LOCALES
    output: Literal["text", "json"] = "text"
    json_schema: dict | None = None             # JSON tasks: sent to the engine for guided decoding
    sampling: dict = field(default_factory=dict)  # task defaults under the spec's explicit sampling
    guardrails: tuple[str, ...] = ("length", "repetition")
    needs_reviews: bool = False
    stop: tuple[str, ...] = ("###",)            # the templates' section marker ends an answer
    parse: Parse | None = None                  # output-form check: text -> None | reason
    ground: Ground | None = None                # fact check: (text, fields) -> None | reason
    variants: Callable[[Any], tuple[str, ...]] | None = None  # spec -> variant names
    label: dict[str, str] = field(default_factory=dict)  # locale -> how the output is presented
    chat_sampling: dict = field(default_factory=dict)  # sampling defaults of the chat format

    @property
    def template_id(self) -> str:
        return f"{self.name}/v{self.version}"

    def variants_for(self, spec: Any) -> tuple[str, ...]:
        """Variants per (sku, locale): one unnamed variant unless a task says otherwise."""
        return self.variants(spec) if self.variants else ("",)

    def guard_text(self, text: str) -> str:
        """The prose of an output, for the shared guardrails: a JSON output's string values one a
        line (keys are not prose: they would count as English in a ``zh`` language check), any
        other output as it is. Text that does not parse stays as it is; ``parse`` rejects it."""
        if self.output != "json":
            return text
        try:
            return "\n".join(json_strings(json.loads(text)))
        except (ValueError, RecursionError):
            return text

    def template_source(self, locale: str, prompt_format: str = "completion") -> str:
        """The template text of a format: guardrails look for it echoed in outputs."""
        return _chat_source(self.name, locale) if prompt_format == "chat" else _source(self.name, locale)

    def template_for(self, prompt_format: str, chat_template: str = "") -> str:
        """The template id recorded in lineage and fingerprints. The completion format keeps
        ``<task>/v<version>`` (content committed before the chat format stays current); the chat
        format adds a hash of this task's chat prompts and of the model's chat template, so a
        change to either regenerates."""
        if prompt_format != "chat":
            return self.template_id
        h = hashlib.sha256(chat_template.encode())
        for loc in self.locales:
            h.update(_chat_source(self.name, loc).encode())
        return f"{self.template_id}/chat-{h.hexdigest()[:12]}"

    def messages(self, row: dict[str, Any], locale: str, currency: str = "USD",
                 variant: str = "", few_shot: bool = True) -> list[dict[str, str]]:
        """The chat prompt for one cleaned row: the system instruction, each worked example as a
        user and an assistant turn, then the row's facts as the last user turn. Examples render
        through the same user template as the row, so they show the model exactly its input.
        ``few_shot=False`` leaves the examples out: what a LoRA adapter trained on the system
        instruction and the facts alone was trained on (its card's ``prompt.few_shot``)."""
        if locale not in self.locales:
            raise KeyError(f"task {self.name!r} has no {locale!r} template; it has {list(self.locales)}")
        chat = _chat(self.name, locale)

        def user(data: dict[str, Any], var: str) -> str:
            facts = {f: data.get(f) for f in self.fields}
            return chat["user"].render(row=facts, currency=currency, variant=var).strip()

        out = [{"role": "system", "content": chat["system"]}]
        for ex in chat["examples"] if few_shot else ():
            answer = ex["output"]
            if not isinstance(answer, str):  # a JSON task's example answer, written as YAML
                answer = json.dumps(answer, ensure_ascii=False)
            out += [{"role": "user", "content": user(ex["row"], ex.get("variant") or variant)},
                    {"role": "assistant", "content": answer.strip()}]
        out.append({"role": "user", "content": user(row, variant)})
        return out

    def __getstate__(self) -> dict[str, Any]:
        # Compiled templates are generated code that does not pickle; a copy recompiles them.
        return {k: v for k, v in self.__dict__.items() if k != "_templates"}

    @cached_property
    def _templates(self) -> dict[str, Any]:
        return {loc: _ENV.from_string(_source(self.name, loc)) for loc in self.locales}

    def render(self, row: dict[str, Any], locale: str, currency: str = "USD", variant: str = "") -> str:
        """The prompt for one cleaned row. Only ``self.fields`` are visible to the template."""
        if locale not in self.locales:
            raise KeyError(f"task {self.name!r} has no {locale!r} template; it has {list(self.locales)}")
        data = {f: row.get(f) for f in self.fields}
        text = self._templates[locale].render(row=data, currency=currency, variant=variant)
        return text.strip() + "\n"
