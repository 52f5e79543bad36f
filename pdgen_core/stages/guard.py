"""Guard: check every generated text; accept it, send it for another attempt with a new seed, or
reject it with the reason. Per-row engine errors become rejects here (stage ``generate``). It runs
in the engine actor, on each text as the engine finishes it (``generate.EngineActor``).

Output rows are complete content rows plus ``status`` (accepted | retry | rejected), ``reason``
and ``stage``, so the staged files are all the commit needs.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa

from pdgen_core.guardrails import GuardContext, run_checks
from pdgen_core.guardrails.truncation import trim_to_sentence
from pdgen_core.models.chat import strip_thinking
from pdgen_core.run_context import RunContext
from pdgen_core.stages.plan import WORK_SCHEMA
from pdgen_core.text import strip_invisible
from pdgen_core.tasks import TASKS

# A generated row: its work item (less ``reject_reason``, which only a plan reject carries and no
# generated item has) and the outcome. A reject's why is ``stage``/``reason``/``detail`` on every
# reject row, whatever the stage; before it becomes one, a catalog row carries it as
# ``reject_reason``/``reject_detail`` (validation) and a work item as ``reject_reason`` (plan).
GEN_SCHEMA = pa.schema([f for f in WORK_SCHEMA if f.name != "reject_reason"] + [
    ("text", pa.string()), ("label", pa.string()), ("model", pa.string()), ("adapter", pa.string()),
    ("sampling_hash", pa.string()), ("run_id", pa.string()),
    ("generated_at", pa.timestamp("us", tz="UTC")), ("tokens_in", pa.int64()),
    ("tokens_out", pa.int64()), ("attempts", pa.int32()),
    ("finish_reason", pa.string()),
    ("status", pa.string()), ("stage", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
])


def finish_reason(row: dict[str, Any]) -> str:
    """``length`` when the engine stopped at the request's ``max_tokens`` (vLLM's own finish
    reason), else ``stop``: an end-of-turn token (the model's generation config) or a stop string."""
    return "length" if row.get("finish") == "length" else "stop"


def guard_context(row: dict[str, Any], ctx: RunContext, finish: str = "stop") -> GuardContext:
    g = ctx.guard
    fields = json.loads(row.get("fields_json") or "{}")
    inputs = tuple(str(v) for v in fields.values() if isinstance(v, str) and v)
    return GuardContext(
        locale=row["locale"], title=row.get("title"), brand=row.get("brand"), price=row.get("price"),
        currency=ctx.currency, known_brands=g.known_brands, banned_terms=g.banned_terms,
        url_allowlist=g.url_allowlist, input_texts=inputs,
        system_prompt=TASKS[row["task"]].template_source(row["locale"], ctx.prompt_format),
        min_chars=g.min_chars, max_chars=g.max_chars,
        fields=fields, finish_reason=finish,
    )


def check(task, text: str, row: dict[str, Any], ctx: RunContext, finish: str = "stop") -> str | None:
    """The first reason to refuse ``text``: output form (JSON tasks first, so broken JSON reads
    ``invalid_json``), then the task's guardrails, then its own checks and fact grounding."""
    if task.output == "json" and task.parse is not None:
        if reason := task.parse(text):
            return "truncated" if finish == "length" and reason == "invalid_json" else reason
    if reason := run_checks(task.guardrails, task.guard_text(text), guard_context(row, ctx, finish)):
        return reason
    if task.output != "json" and task.parse is not None:
        if reason := task.parse(text):
            return reason
    if task.ground is not None:
        return task.ground(text, json.loads(row.get("fields_json") or "{}"))
    return None


def judge(row: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """One work item with its engine output (``generated_text``, ``finish``, token counts, or
    ``engine_error``) -> one GEN_SCHEMA row. A row never raises here (a bad text is a reject); an
    exception is a bug in the guard, and the job's error says so (``errors.failed_stage`` finds
    this module in the traceback)."""
    task = TASKS[row["task"]]
    text = strip_thinking(strip_invisible(row.get("generated_text") or "")).strip()
    finish = finish_reason(row)
    trimmed = False
    if finish == "length" and task.output != "json":
        # A text cut mid-sentence: keep its complete sentences when they are enough to pass
        # (the length check then judges what is left); JSON cut short fails to parse anyway.
        kept = trim_to_sentence(text, row["locale"])
        trimmed = kept is not None and kept != text
        text = kept if kept is not None else text
    out = {k: row.get(k) for k in WORK_SCHEMA.names}
    out.update(
        text=text, label=task.label.get(row["locale"]), model=ctx.model, adapter=ctx.adapters.get(row["task"], ""),
        sampling_hash=ctx.sampling_hash(row["task"]), run_id=ctx.run_id,
        generated_at=dt.datetime.now(dt.timezone.utc), tokens_in=int(row.get("num_input_tokens") or 0),
        tokens_out=int(row.get("num_generated_tokens") or 0), attempts=int(row["attempt"]),
        finish_reason="length_trimmed" if trimmed else finish,
        status="accepted", stage=None, reason=None, detail=None,
    )
    err = row.get("engine_error") or ""
    if err:
        out.update(status="rejected", stage="generate", reason="engine_error", detail=err[:500])
        return out
    reason = check(task, text, row, ctx, "stop" if trimmed else finish)
    if reason:
        last = int(row["attempt"]) >= ctx.max_attempts
        out.update(status="rejected" if last else "retry", stage="guard", reason=reason,
                   detail=text[:300])
    return out


def next_attempt(judged: dict[str, Any]) -> dict[str, Any]:
    """The work item of a text the guard sent back: its next attempt, with the reason."""
    row = {k: judged.get(k) for k in WORK_SCHEMA.names}
    row.update(attempt=int(judged["attempt"]) + 1, retry_reason=judged["reason"])
    return row
