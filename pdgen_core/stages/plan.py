"""Plan: turn clean catalog rows into work items, one per (sku, task, locale, variant), each with
its input fingerprint. Incremental runs then keep only the items whose fingerprint differs from
the committed content (``pdgen_core.incremental``).

The ``RunContext`` (``pdgen_core.run_context``) carries what a worker needs to plan.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from pdgen_core import fingerprint as fp
from pdgen_core.run_context import RunContext
from pdgen_core.stages.contract import RowStage
from pdgen_core.tasks import TASKS

WORK_SCHEMA = pa.schema([
    ("sku", pa.string()), ("task", pa.string()), ("locale", pa.string()), ("variant", pa.string()),
    ("title", pa.string()), ("brand", pa.string()), ("price", pa.float64()),
    ("fields_json", pa.string()), ("input_fingerprint", pa.string()), ("template", pa.string()),
    ("attempt", pa.int32()), ("input_flags", pa.string()), ("skip_reason", pa.string()),
    # Why the previous attempt was rejected (null on the first): a retry changes what caused it.
    ("retry_reason", pa.string()),
])


def work_items(row: dict[str, Any], ctx: RunContext) -> list[dict[str, Any]]:
    """The work items for one clean row (``skip_reason`` set when the task cannot run on it)."""
    out = []
    for name in ctx.tasks:
        task = TASKS[name]
        fields = {f: _field(row, f) for f in task.fields}
        skip = None
        if task.needs_reviews and (fields.get("review_count") or 0) < ctx.min_reviews:
            skip = "too_few_reviews"
        for locale in ctx.task_locales(name):
            for variant in ctx.variants.get(name, ("",)):
                out.append({
                    "sku": row["sku"], "task": name, "locale": locale, "variant": variant,
                    "title": row.get("title"), "brand": row.get("brand"), "price": row.get("price"),
                    "fields_json": json.dumps(fields, ensure_ascii=False, sort_keys=True),
                    "input_fingerprint": fp.input_fingerprint(
                        fields, template=ctx.template(name), locale=locale, variant=variant,
                        currency=ctx.currency, model=ctx.model, adapter=ctx.adapters.get(name, ""),
                        sampling=ctx.sampling_hash(name), guardrails=ctx.guardrails_version,
                    ),
                    "template": ctx.template(name),
                    "attempt": 1,
                    "input_flags": row.get("input_flags"),
                    "skip_reason": skip,
                })
    return out


def _field(row: dict[str, Any], name: str) -> Any:
    if name == "reviews":
        return json.loads(row.get("reviews_json") or "[]")
    if name == "review_count":
        return int(row.get("review_count") or 0)
    return row.get(name)


def plan_batch(batch: pa.Table, ctx: RunContext) -> pa.Table:
    """Ray Data UDF body: clean rows (``_reject`` null) -> work items."""
    items = [it for r in batch.to_pylist() for it in work_items(r, ctx)]
    return pa.Table.from_pylist(items, schema=WORK_SCHEMA)


# One clean row -> one item per task, locale and variant: not 1:1.
PLAN = RowStage("plan", plan_batch, needs=frozenset({"sku", "title"}), makes=WORK_SCHEMA, one_to_one=False)
