"""The prompt's scaffolding in the text: ``prompt_echo``.

A small model sometimes continues the prompt instead of answering it: it writes "Product facts:
Title: ... Brand: ...", repeats "Write the product description.", or copies the system
instruction ("Use only the facts the user gives."). ``injection_echo`` already rejects ten
template tokens in a row; this check is finer and knows the prompt's parts
(``GuardContext.system_prompt`` holds the chat YAML or the completion template):

- a field label of the user template followed by a colon ("Title:", "Audience:", "Details:");
- a literal line of the user template ("Product facts:", "Write the recommendation.");
- six consecutive words of the system instruction that are not also in the row's input values;
- five consecutive words of a worked example's answer, two of them content words that the row's
  facts do not have: "A wooden shape sorting cube for rides on the road" for a race track, or
  "simple to carry every day" for a T-shirt. Phrases made of the row's own words ("casual shirt
  for men") are not an echo.
"""

from __future__ import annotations

import re
from functools import lru_cache

import yaml

from pdgen_core.guardrails._text import normalise, tokens
from pdgen_core.guardrails.context import GuardContext
from pdgen_core.guardrails.facts import fact_tokens

SHINGLE = 6
EXAMPLE_SHINGLE = 5
EXAMPLE_NEW_WORDS = 2
_STOP = frozenset("a an and the of for with in on at by to from or is it its this that as be".split())
# Labels every pdgen template uses, for a context without a template.
DEFAULT_LABELS = ("Product facts", "Title", "Brand", "Category", "For", "Colour", "Color", "Material",
                  "Details", "Price", "Audience", "Reviews", "Review count", "Average rating")
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_LABEL = re.compile(r"^\s*(?:#+\s*)?([A-Z][A-Za-z ]{0,24}?)\s*:")


@lru_cache(maxsize=64)
def prompt_parts(source: str) -> tuple[tuple[str, ...], tuple[str, ...], str, tuple[str, ...]]:
    """(labels, literal lines, system instruction, worked answers) of a chat YAML or a
    completion template."""
    try:
        doc = yaml.safe_load(source) if source else None
    except yaml.YAMLError:
        doc = None
    answers: list[str] = []
    if isinstance(doc, dict) and "user" in doc:
        user, system = str(doc.get("user") or ""), str(doc.get("system") or "")
        for ex in doc.get("examples") or ():
            out = ex.get("output") if isinstance(ex, dict) else None
            answers += [out] if isinstance(out, str) else _strings(out)
    else:
        user, system = source, ""
    labels, lines = set(DEFAULT_LABELS), []
    for raw in user.splitlines():
        line = _JINJA.sub("", raw).strip()
        if m := _LABEL.match(line):
            labels.add(m.group(1).strip())
        if len(line.split()) >= 2:   # "Product facts:", "Write the product description."
            lines.append(line.lstrip("# ").strip())
    return tuple(sorted(labels)), tuple(lines), system, tuple(answers)


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@lru_cache(maxsize=64)
def _label_pattern(labels: tuple[str, ...]) -> re.Pattern[str]:
    alts = "|".join(re.escape(x) for x in sorted(labels, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z])(?:{alts})\s*:", re.IGNORECASE)


def _shingles(toks: list[str], n: int = SHINGLE) -> set[tuple[str, ...]]:
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


@lru_cache(maxsize=64)
def _system_shingles(system: str) -> frozenset[tuple[str, ...]]:
    return frozenset(_shingles(tokens(normalise(system))))


@lru_cache(maxsize=64)
def _answer_shingles(answers: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
    return frozenset().union(*(_shingles(tokens(normalise(a)), EXAMPLE_SHINGLE) for a in answers))


def find_echo(text: str, ctx: GuardContext) -> list[str]:
    """The pieces of the prompt's scaffolding found in ``text``."""
    labels, lines, system, answers = prompt_parts(ctx.system_prompt)
    text = normalise(text)
    found = [m.group() for m in _label_pattern(labels).finditer(text)]
    squashed = " ".join(text.casefold().split())
    found += [line for line in lines if " ".join(line.casefold().split()) in squashed]
    toks = tokens(text)
    grams = _system_shingles(system) & _shingles(toks)
    for value in ctx.input_texts if grams else ():
        grams -= _shingles(tokens(normalise(value)))
    found += [" ".join(g) for g in grams]
    if answers:
        facts = fact_tokens(ctx)
        for g in _answer_shingles(answers) & _shingles(toks, EXAMPLE_SHINGLE):
            if sum(w not in facts and w not in _STOP for w in g) >= EXAMPLE_NEW_WORDS:
                found.append(" ".join(g))
    return found


def check_prompt_echo(text: str, ctx: GuardContext) -> str | None:
    """``prompt_echo`` when the text repeats a label, a line or the instruction of the prompt."""
    return "prompt_echo" if find_echo(text, ctx) else None
