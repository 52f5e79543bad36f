"""The hand-labelled SmolLM2 corpus (``smollm2_labelled.jsonl``) and the guard stage's judgement
of one of its texts, without Ray or an engine.

One line per text: ``task``, ``facts`` (the row values the prompt showed, cut to what the text
needs), ``currency``, ``variant``, ``finish_reason`` (the engine's), ``text`` (as generated),
``label`` (``publishable`` or ``unpublishable``, by a person who read it), ``reasons`` (the
failures that person saw, as guardrail reasons) and ``note``. ``source`` says where the text
came from: ``smollm2`` (``make_smollm2_corpus.py``), ``pdgen-tiny`` (issue 17's word salad) or
``hand`` (a real SmolLM2 failure quoted in the issue or the brief, or a crafted example of
assistant talk and prompt scaffolding, which SmolLM2 did not write in these 200 texts; ``note``
says which). A label judges what would be published: for a text the engine cut at
``max_tokens``, the guard stage's trim of it (``published``).

The 200 SmolLM2 texts were generated with the chat prompts of commit 8d3d862; commit 3dd8a83
replaced the worked examples that SmolLM2 copied ("a wooden shape sorting cube", "simple to
carry every day"), so ``prompt_echo`` labels of those copies refer to the older examples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pdgen_core.guardrails import GuardContext, run_checks
from pdgen_core.guardrails.truncation import trim_to_sentence
from pdgen_core.tasks import TASKS

PATH = Path(__file__).with_name("smollm2_labelled.jsonl")


def load() -> list[dict[str, Any]]:
    return [json.loads(line) for line in PATH.read_text(encoding="utf-8").splitlines() if line.strip()]


def context(ex: dict[str, Any], finish: str) -> GuardContext:
    """What ``stages/guard.guard_context`` builds for the row (no catalog brand list: the
    ``names`` check must stand on its own)."""
    task = TASKS[ex["task"]]
    fields = {f: ex["facts"].get(f) for f in task.fields if ex["facts"].get(f) is not None}
    return GuardContext(
        locale="en", title=fields.get("title"), brand=fields.get("brand"), price=ex["facts"].get("price"),
        currency=ex.get("currency", "USD"),
        input_texts=tuple(v for v in fields.values() if isinstance(v, str) and v),
        system_prompt=task.template_source("en", "chat"), fields=fields, finish_reason=finish,
    )


def published(ex: dict[str, Any]) -> tuple[str, str]:
    """(text, finish_reason) as the guard stage judges it: a text cut at ``max_tokens`` is
    trimmed to its last complete sentence, and then counts as finished."""
    text, finish = ex["text"].strip(), ex.get("finish_reason") or "stop"
    if finish == "length" and TASKS[ex["task"]].output != "json":
        kept = trim_to_sentence(text)
        if kept is not None and kept != text:
            return kept, "stop"
    return text, finish


def judge(ex: dict[str, Any]) -> str | None:
    """The guard stage's verdict (``stages/guard.check`` after ``judge``'s trim): ``None`` to
    accept, else the first reason."""
    task = TASKS[ex["task"]]
    text, finish = published(ex)
    fields = {f: ex["facts"].get(f) for f in task.fields if ex["facts"].get(f) is not None}
    if task.output == "json" and task.parse is not None:
        if reason := task.parse(text):
            return "truncated" if finish == "length" and reason == "invalid_json" else reason
    if reason := run_checks(task.guardrails, task.guard_text(text), context(ex, finish)):
        return reason
    if task.output != "json" and task.parse is not None and (reason := task.parse(text)):
        return reason
    return task.ground(text, fields) if task.ground is not None else None
