"""Rejects before generation: catalog rows that failed validation, and work items a task cannot
run on (``too_few_reviews``). Each becomes a row of ``commit.REJECT_SCHEMA``, staged under the
run's folder and appended to ``rejects/<task>`` at the commit: nothing is dropped silently.

``reject_row`` is the one builder of a reject row; the guard's rejects carry the same columns on
the generated rows (``stages.guard``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from pdgen_core import storage
from pdgen_core.stages.commit import REJECT_SCHEMA
from pdgen_core.stages.contract import RAY_DEFAULT, RowStage


def reject_row(*, sku: str | None, task: str, stage: str, reason: str, run_id: str,
               rejected_at: dt.datetime, locale: str = "*", variant: str = "",
               detail: str | None = None, attempts: int = 0,
               input_fingerprint: str | None = None) -> dict[str, Any]:
    """One row of ``REJECT_SCHEMA`` (``finish_reason`` null: never generated)."""
    return {"sku": sku, "task": task, "locale": locale, "variant": variant, "stage": stage,
            "reason": reason, "detail": detail, "attempts": attempts, "run_id": run_id,
            "rejected_at": rejected_at, "input_fingerprint": input_fingerprint}


def validation_rejects(batch: pa.Table, tasks: tuple[str, ...], run_id: str) -> pa.Table:
    """A rejected catalog row (``reject_reason`` set) is a reject of every task, for every locale."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = [reject_row(sku=r["sku"], task=t, stage="validate", reason=r["reject_reason"],
                       detail=r["reject_detail"], run_id=run_id, rejected_at=now)
            for r in batch.select(["sku", "reject_reason", "reject_detail"]).to_pylist() for t in tasks]
    return pa.Table.from_pylist(rows, schema=REJECT_SCHEMA)


def plan_rejects(batch: pa.Table, run_id: str) -> pa.Table:
    """Work items with a ``reject_reason``: rejects of stage ``plan``, with their fingerprint."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = [reject_row(sku=r["sku"], task=r["task"], locale=r["locale"], variant=r["variant"],
                       stage="plan", reason=r["reject_reason"], run_id=run_id, rejected_at=now,
                       input_fingerprint=r["input_fingerprint"])
            for r in batch.to_pylist()]
    return pa.Table.from_pylist(rows, schema=REJECT_SCHEMA)


# A rejected catalog row is one reject per task (not 1:1); a skipped item is one reject.
VALIDATION_REJECTS = RowStage("validate", validation_rejects, needs=frozenset({"sku", "reject_reason", "reject_detail"}),
                              makes=REJECT_SCHEMA, one_to_one=False, batch_size=RAY_DEFAULT)
PLAN_REJECTS = RowStage("plan", plan_rejects, needs=frozenset({"sku", "task", "locale", "variant",
                                                               "reject_reason", "input_fingerprint"}),
                        makes=REJECT_SCHEMA, one_to_one=True, batch_size=RAY_DEFAULT)


def stage(ds, loc: storage.Location) -> None:
    """Write ``ds`` (reject rows) under ``loc``, replacing what an earlier attempt left there."""
    storage.delete_tree(loc)
    ds.write_parquet(loc.path, filesystem=loc.fs)
