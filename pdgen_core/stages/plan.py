"""Plan: turn clean catalog rows into work items, one per (sku, task, locale, variant), each with
its input fingerprint. Incremental runs then keep only the items whose fingerprint differs from
the committed content (``pdgen_core.incremental``).

The ``RunContext`` (``pdgen_core.run_context``) carries what a worker needs to plan.

``plan_batch`` plans a whole Arrow batch at once: per task, each field the template reads becomes
a column of JSON texts by Arrow compute (``_fragments``), the fields object is joined from them,
and per (locale, variant) the constant rest of the fingerprinted object is put around it, then one
SHA-256 per item. Its items are ``work_items``' row for row, in the same order, byte for byte
(``plan_batch_rows``, the per-row path, stays as the reference and for batches of column types
the batch path does not take; a property test compares the two).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pdgen_core import fingerprint as fp
from pdgen_core.run_context import RunContext
from pdgen_core.stages.contract import RowStage
from pdgen_core.tasks import TASKS

WORK_SCHEMA = pa.schema([
    ("sku", pa.string()), ("task", pa.string()), ("locale", pa.string()), ("variant", pa.string()),
    ("title", pa.string()), ("brand", pa.string()), ("price", pa.float64()),
    ("fields_json", pa.string()), ("input_fingerprint", pa.string()), ("template", pa.string()),
    ("attempt", pa.int32()), ("input_flags", pa.string()), ("reject_reason", pa.string()),
    # Why the previous attempt was rejected (null on the first): a retry changes what caused it.
    ("retry_reason", pa.string()),
])


def work_items(row: dict[str, Any], ctx: RunContext) -> list[dict[str, Any]]:
    """The work items for one clean row (``reject_reason`` set when the task cannot run on it)."""
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
                    "reject_reason": skip,
                })
    return out


def _field(row: dict[str, Any], name: str) -> Any:
    if name == "reviews":
        return json.loads(row.get("reviews_json") or "[]")
    if name == "review_count":
        return int(row.get("review_count") or 0)
    return row.get(name)


def plan_batch_rows(batch: pa.Table, ctx: RunContext) -> pa.Table:
    """``work_items`` on every row (the per-row path, the reference for ``plan_batch``)."""
    items = [it for r in batch.to_pylist() for it in work_items(r, ctx)]
    return pa.Table.from_pylist(items, schema=WORK_SCHEMA)


def plan_batch(batch: pa.Table, ctx: RunContext) -> pa.Table:
    """Ray Data UDF body: clean rows (``reject_reason`` null) -> work items, the batch at once. The same
    table as ``plan_batch_rows``; a batch whose carried columns are of a type the batch path does
    not take (not text, a price that is not a number) goes through it."""
    if not _batchable(batch):
        return plan_batch_rows(batch, ctx)
    n = batch.num_rows
    if n == 0:
        return WORK_SCHEMA.empty_table()
    carried = {c: _column(batch, c, WORK_SCHEMA.field(c).type) for c in ("sku", "title", "brand", "price", "input_flags")}
    null = pa.nulls(n, pa.string())
    groups = []
    for name in ctx.tasks:
        task = TASKS[name]
        frags = [_fragments(batch, f) for f in task.fields]
        canon = fp.fields_object(list(task.fields), [c for c, _ in frags])
        plain = fp.fields_object(list(task.fields), [j for _, j in frags], sep=", ", colon=": ")
        skip = null
        if task.needs_reviews:
            count = _review_count(batch) if "review_count" in task.fields else pa.repeat(pa.scalar(0), n)
            skip = pc.if_else(pc.less(count, ctx.min_reviews), pa.scalar("too_few_reviews"), null)
        template = ctx.template(name)
        frame = dict(template=template, currency=ctx.currency, model=ctx.model,
                     adapter=ctx.adapters.get(name, ""), sampling=ctx.sampling_hash(name),
                     guardrails=ctx.guardrails_version)
        for locale in ctx.task_locales(name):
            for variant in ctx.variants.get(name, ("",)):
                head, tail = fp.fingerprint_frame(locale=locale, variant=variant, **frame)
                groups.append(pa.table({
                    **carried, "task": _const(name, n), "locale": _const(locale, n), "variant": _const(variant, n),
                    "fields_json": _broadcast(plain, n),
                    "input_fingerprint": fp.sha256_hex(_broadcast(fp.join_texts(head, canon, tail), n)),
                    "template": _const(template, n), "attempt": pa.repeat(pa.scalar(1, pa.int32()), n),
                    "reject_reason": skip, "retry_reason": null,
                }).select(WORK_SCHEMA.names).cast(WORK_SCHEMA))
    if not groups:
        return WORK_SCHEMA.empty_table()
    out = pa.concat_tables(groups)
    if len(groups) > 1:  # item-major -> row-major, as work_items orders them
        out = out.take(pa.array(np.arange(len(groups) * n).reshape(len(groups), n).T.ravel()))
    return out


_TEXT = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view, pa.types.is_null)


def _batchable(batch: pa.Table) -> bool:
    """The columns the items carry as they are: text (or null) columns, and a numeric price."""
    for c in ("sku", "title", "brand", "input_flags"):
        if c in batch.column_names and not any(f(batch.schema.field(c).type) for f in _TEXT):
            return False
    if "price" in batch.column_names:
        t = batch.schema.field("price").type
        return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)
    return True


def _column(batch: pa.Table, name: str, type_: pa.DataType):
    if name not in batch.column_names:
        return pa.nulls(batch.num_rows, type_)
    return fp._one_chunk(batch.column(name)).cast(type_)


def _const(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), n)


def _broadcast(texts, n: int) -> pa.Array:
    return pa.repeat(texts, n) if isinstance(texts, pa.Scalar) else texts


def _fragments(batch: pa.Table, name: str) -> tuple[Any, Any]:
    """(canonical JSON, ``json.dumps`` JSON) of ``_field(row, name)`` for every row: string
    arrays, or one Python string for all rows."""
    if name == "reviews":
        col = batch.column("reviews_json") if "reviews_json" in batch.column_names else None
        if col is None or col.null_count == len(col):
            return "[]", "[]"
        return _python_fragments([json.loads(v or "[]") for v in col.to_pylist()])
    if name == "review_count":
        text = _review_count(batch).cast(pa.string())
        return text, text
    if name not in batch.column_names:
        return "null", "null"
    col = fp._one_chunk(batch.column(name))
    t = col.type
    if pa.types.is_null(t) or col.null_count == len(col):
        return "null", "null"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        text = fp.json_strings(col)
        return text, text
    if pa.types.is_floating(t):
        reprs = fp.float_reprs(col)
        return fp.canonical_floats(col, reprs), pc.fill_null(reprs, "null")
    if pa.types.is_integer(t):
        text = pc.fill_null(col.cast(pa.string()), "null")
        return text, text
    return _python_fragments(col.to_pylist())  # bools, lists, structs...: as work_items does


def _review_count(batch: pa.Table) -> pa.Array:
    """``int(review_count or 0)`` per row, as ``_field``."""
    if "review_count" not in batch.column_names:
        return pa.repeat(pa.scalar(0, pa.int64()), batch.num_rows)
    col = fp._one_chunk(batch.column("review_count"))
    if pa.types.is_integer(col.type):
        return pc.fill_null(col.cast(pa.int64()), 0)
    return pa.array([int(v or 0) for v in col.to_pylist()], pa.int64())


def _python_fragments(values: list) -> tuple[pa.Array, pa.Array]:
    canon = [fp.canonical_json(v) for v in values]
    plain = [json.dumps(v, ensure_ascii=False, sort_keys=True) for v in values]
    return pa.array(canon, pa.string()), pa.array(plain, pa.string())


# One clean row -> one item per task, locale and variant: not 1:1.
PLAN = RowStage("plan", plan_batch, needs=frozenset({"sku", "title"}), makes=WORK_SCHEMA, one_to_one=False)
