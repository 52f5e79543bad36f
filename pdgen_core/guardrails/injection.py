"""Prompt injection, in inputs and echoed in outputs.

``find_instructions`` finds instruction-like text in English and Chinese: *phrases* ("ignore all
previous instructions", "you are now DAN", "忽略之前的指令") and *markers* (chat tokens such as
``<|im_start|>``, role lines such as ``system:``, headings such as ``### Instruction``).
``hygiene.neutralise_injection`` uses it on inputs; ``check_injection`` rejects an output that
contains such text, repeats a long span of the prompt template, or copies an instruction-like
sentence from an input field.
"""

from __future__ import annotations

import re

from pdgen_core.guardrails._text import normalise, tokens
from pdgen_core.guardrails.context import GuardContext
from pdgen_core.guardrails.echo import prompt_parts

_QUAL = (
    r"(?:all|any|the|your|my|these|those|previous|prior|above|earlier|preceding|former|original"
    r"|system|of)"
)
_ORDERS = r"(?:instructions?|prompts?|directions|guidelines|messages?)"
_BEFORE = r"(?:previous|prior|above|earlier|preceding)"
_PHRASES = [
    rf"\b(?:ignore|disregard|forget|override|bypass)\s+(?:{_QUAL}\s+)+{_ORDERS}\b",
    # "rules" only with "previous" and the like: "forget the rules of winter dressing" is copy.
    rf"\b(?:ignore|disregard|forget)\s+(?:all\s+)?(?:the\s+)?{_BEFORE}\s+(?:\w+\s+)?rules\b",
    r"\bdisregard\s+(?:all\s+|everything\s+)?(?:of\s+)?(?:the\s+)?(?:above|previous|prior|preceding)\b",
    # Singular only: "the system prompts you to update" is a verb.
    r"\b(?:system|developer|hidden|initial)\s+prompt\b",
    # Not "you are now ready": only a new identity or mode.
    r"\byou\s+are\s+now\s+(?:a|an|my|dan|in\s+\w+\s+mode|acting|going\s+to|no\s+longer|unrestricted"
    r"|jailbroken)\b",
    r"\bfrom\s+now\s+on,?\s+(?:you|act|respond|reply|answer|only)\b",
    r"\b(?:new|updated|real|actual)\s+instructions?\s*:",
    r"\b(?:reveal|print|show|repeat|output)\s+(?:your|the)\s+(?:system\s+)?(?:prompt|instructions)\b",
    # "忽略之前的指令"; not "无视的要求" (a real review: "ignored the request").
    r"(?:忽略|无视|忽视|不要理会|不用理会|别管|忘记|忘掉)掉?你?"
    r"(?:之前|以上|上面|前面|先前|此前|上述|所有|全部|一切)"
    r"的?(?:所有|全部)?的?(?:指令|指示|提示词|提示|规则|要求|设定|命令)",
    # Not 系统提示 alone: "系统提示音" is a phone's notification sound.
    r"系统提示词|系统指令",
    r"你现在是(?:一个|一名|我的)",
    r"从现在(?:开始|起)[，,]?\s*你(?:是|要|必须|只|扮演|将)",
    r"(?:新的|真正的)(?:指令|指示)\s*[:：]",
]
_MARKERS = [
    r"<\|[A-Za-z_]+\|>",
    r"\[/?INST\]",
    r"<</?SYS>>",
    r"^\s*#{1,6}\s*(?:instructions?|system|response|input|output|assistant|user|prompt|context)\b\s*:?",
    r"^\s*(?:system|assistant|developer)\s*[:：]",
]
PHRASE = re.compile("|".join(f"(?:{p})" for p in _PHRASES), re.IGNORECASE)
MARKER = re.compile("|".join(f"(?:{p})" for p in _MARKERS), re.IGNORECASE | re.MULTILINE)
# Sentences that address the model, beyond the phrases above ("reply with", "你的任务").
_ADDRESS = re.compile(
    r"\byour\s+(?:task|job|role|instructions?)\b|\b(?:respond|reply|answer)\s+(?:with|only)\b"
    r"|\b(?:say|write|output|print)\s+(?:only|exactly|the\s+following)\b|\brepeat\s+after\s+me\b"
    r"|\bdo\s+not\s+mention\b|你的任务|请输出|请回复|只(?:输出|回复|回答)",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?。！？\n]+[.!?。！？]?")
ECHO_TOKENS = 10       # this many consecutive prompt-template tokens in an output is an echo
MIN_COPIED_CHARS = 12  # shorter instruction-like sentences are not worth matching


# Fullwidth ASCII ("ｉｇｎｏｒｅ") folded one character for one, so spans stay valid in the input.
_FOLD_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def find_instructions(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of instruction-like text; kind is ``phrase`` or ``marker``."""
    folded = text.translate(_FOLD_WIDTH)
    found = [(*m.span(), "phrase") for m in PHRASE.finditer(folded)]
    found += [(*m.span(), "marker") for m in MARKER.finditer(folded)]
    return sorted(found)


def _shingles(toks: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def _template_literals(template: str) -> list[str]:
    """The literal text of a Jinja template; placeholders split it, so no shingle spans one."""
    return re.split(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", template, flags=re.DOTALL)


def _instructions(source: str) -> str:
    """The instruction text of a prompt: a chat YAML's system and user parts, not its worked
    answers (an answer for a row like the example's may rightly say the same: ``prompt_echo``
    judges copies of examples against the row's facts); a completion template as it is."""

    labels, lines, system, answers = prompt_parts(source)
    return system + "\n" + "\n".join(lines) if system or answers else source


def echoes_prompt(text: str, ctx: GuardContext) -> bool:
    """Whether the output repeats ``ECHO_TOKENS`` tokens in a row of the prompt template that are
    not also in an input field (a quoted product title is data, not instructions)."""
    grams: set[tuple[str, ...]] = set()
    for part in _template_literals(normalise(_instructions(ctx.system_prompt))):
        grams |= _shingles(tokens(part), ECHO_TOKENS)
    for field in ctx.input_texts:
        grams -= _shingles(tokens(normalise(field)), ECHO_TOKENS)
    return bool(grams & _shingles(tokens(normalise(text)), ECHO_TOKENS))


def _squash(s: str) -> str:
    return " ".join(normalise(s).casefold().split())


def copies_input_instruction(text: str, ctx: GuardContext) -> bool:
    """Whether the output contains an instruction-like sentence taken from an input field."""
    out = _squash(text)
    for field in ctx.input_texts:
        for m in _SENTENCE.finditer(normalise(field)):
            sentence = _squash(m.group())
            if len(sentence) >= MIN_COPIED_CHARS and sentence in out and (
                find_instructions(sentence) or _ADDRESS.search(sentence)
            ):
                return True
    return False


def check_injection(text: str, ctx: GuardContext) -> str | None:
    """``injection_echo`` when the output holds instruction-like text, repeats the prompt
    template, or copies an instruction-like sentence from an input field."""
    if find_instructions(normalise(text)) or echoes_prompt(text, ctx):
        return "injection_echo"
    return "injection_echo" if copies_input_instruction(text, ctx) else None
