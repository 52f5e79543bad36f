"""Prompt: render each work item's prompt from its task's versioned, sandboxed template and attach
the engine request: a chat model's messages through its own chat template, or the completion
template's text; sampling parameters with a per-row seed, and ``sampling.retry``'s changes on a
guard retry; the LoRA adapter when the task has one. Catalog values are data to the template,
never template code (see ``tasks/base.py``).
"""

from __future__ import annotations

import json
from typing import Any

from pdgen_core import fingerprint as fp
from pdgen_core.models import chat
from pdgen_core.run_context import RunContext
from pdgen_core.tasks import TASKS


# What a guard retry changes, by the reason the previous attempt was rejected. A new seed alone
# changes nothing at temperature 0, and one penalty for every reason did harm: SmolLM2 retried at
# repetition_penalty 1.2 wrote FAQ answers like "ParXMB" and "BIG BOSSES" where its first attempts
# were plain (40 Myntra rows, 2026-12-01). So the penalty (``sampling.retry``) goes only to texts
# that repeated themselves, or whose reason is unknown.
LONGER = frozenset({"truncated"})
SHORTER = frozenset({"too_long", "post_too_long", "too_many_sentences", "headline_too_long",
                     "body_too_long", "headline_truncated", "body_truncated", "faq_too_long",
                     "too_many_hashtags"})
INVENTED = frozenset({"ungrounded_number", "ungrounded_name", "attribute_mismatch", "other_brand",
                      "brand_missing", "price_mismatch", "meta_text", "prompt_echo",
                      "ungrounded_answer", "ungrounded_question", "first_person_review",
                      "wrong_language", "invalid_json", "schema_mismatch", "empty_field",
                      "faq_count", "duplicate_question", "not_a_question",
                      "body_repeats_headline", "too_short", "empty", "banned_term",
                      "pii_email", "pii_phone", "pii_url", "injection_echo"})
RETRY_RULES_VERSION = "1"   # bump with any rule change: retries are part of what an output is


def request_sampling(row: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """The sampling parameters of one request, without its seed. Attempt 1: the task's. A retry:
    those, changed for the reason the last attempt failed, then ``sampling.retry``'s explicit
    settings on top:

    - ``truncated``: half as many tokens again (1.5x ``max_tokens``) for a text; a JSON task's
      budget already fills much of the context, so it gets the fresh draw below;
    - too long (text, headline, sentences, hashtags): at most 0.1 temperature, and for a
      headline or body cut at its length limit the same;
    - an invented fact, assistant talk, a form error: a fresh draw at temperature 0.5 (a cooler
      retry rewrote the same invention; the first attempt's facts are in the prompt either way);
    - repetition, or a reason it does not know: ``sampling.retry`` (repetition_penalty 1.2).
    """
    params = dict(ctx.sampling[row["task"]])
    if int(row.get("attempt") or 1) <= 1:
        return params
    reason = row.get("retry_reason")
    json_task = TASKS[row["task"]].output == "json"
    if reason in LONGER and not json_task:
        params["max_tokens"] = int(params.get("max_tokens", 64) * 1.5)
    elif reason in SHORTER:
        params["temperature"] = min(params.get("temperature", 0.0), 0.1)
    elif reason in INVENTED or reason in LONGER:  # JSON cut short: more tokens may pass the
        # context (a long zh prompt plus 1.5x a 320-token FAQ budget did), so a fresh draw
        params["temperature"] = 0.5
    else:
        params.update(ctx.retry_sampling)
        return params
    if ctx.retry_in_hash:  # the spec set sampling.retry: its settings hold for every retry
        params.update(ctx.retry_sampling)
    return params


def engine_request(row: dict[str, Any], ctx: RunContext, adapter_names: dict[str, str]) -> dict[str, Any]:
    """Add ``prompt``, ``sampling_params`` (and ``model`` for LoRA) to one work item."""
    task = TASKS[row["task"]]
    fields = json.loads(row["fields_json"])
    if ctx.prompt_format == "chat":
        messages = task.messages(fields, row["locale"], ctx.currency, variant=row["variant"],
                                 few_shot=row["task"] not in ctx.zero_shot)
        prompt = chat.render(ctx.model_path, messages)
    else:
        prompt = task.render(fields, row["locale"], ctx.currency, variant=row["variant"])
    params = request_sampling(row, ctx)
    # Every request carries the same keys: Ray Data turns the dicts into one Arrow struct per
    # block, and a key some rows lack arrives as None (vLLM: "must be real number, not
    # NoneType" when only the repeated texts of a retry round carried the penalty).
    params.setdefault("repetition_penalty", 1.0)
    params["seed"] = fp.row_seed(ctx.base_seed, row["sku"], row["task"], row["locale"],
                                 row["variant"], int(row["attempt"]))
    if task.output == "json" and task.json_schema:
        # The schema travels as a JSON string (vLLM accepts either): as a nested dict, each task's
        # schema became a differently shaped Arrow struct, and Ray failed to concatenate blocks
        # mixing ad_copy and faq rows ("'DataType' object is not iterable" in
        # _backfill_missing_fields).
        params["structured_outputs"] = {"json": json.dumps(task.json_schema, sort_keys=True)}
    out = dict(row, prompt=prompt, sampling_params=params)
    if row["task"] in adapter_names:
        out["model"] = adapter_names[row["task"]]
    return out
