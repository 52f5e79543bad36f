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
from pdgen_core.stages.plan import RunContext
from pdgen_core.tasks import TASKS


def engine_request(row: dict[str, Any], ctx: RunContext, adapter_names: dict[str, str]) -> dict[str, Any]:
    """Add ``prompt``, ``sampling_params`` (and ``model`` for LoRA) to one work item."""
    task = TASKS[row["task"]]
    fields = json.loads(row["fields_json"])
    if ctx.prompt_format == "chat":
        messages = task.messages(fields, row["locale"], ctx.currency, variant=row["variant"])
        prompt = chat.render(ctx.model_path, messages)
    else:
        prompt = task.render(fields, row["locale"], ctx.currency, variant=row["variant"])
    params = dict(ctx.sampling[row["task"]])
    if int(row["attempt"]) > 1:  # a guard retry: at temperature 0 a new seed alone changes nothing
        params.update(ctx.retry_sampling)
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
