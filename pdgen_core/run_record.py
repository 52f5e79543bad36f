"""The run record and its counts: ``<output>/runs/<run_id>.json``, written last (its existence
means the run committed).

The counts are read back from the staged Parquet files (footers and small column scans, a batch at
a time) rather than gathered while the stages run: a resumed run counts what the crashed attempt
staged, and a count can be repeated after a transient S3 error.
"""

from __future__ import annotations

import datetime as dt
import time
from functools import partial
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pdgen_core import storage
from pdgen_core.spec import JobSpec
from pdgen_core.staging import StagedFiles
from pdgen_core.stages import read


@dataclass
class Counts:
    """The run's counters, filled by the stages' staged outputs before the commit."""

    read: int = 0
    invalid: int = 0
    by_task: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    flags: dict[str, dict[str, int]] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    reviews_dropped: int = 0      # reviews without a sku or any text left after hygiene
    feed_unknown_skus: int = 0    # skus of a changes feed that are not in the catalog
    feed_beyond_limit: int = 0    # skus of a changes feed in the catalog but past catalog.limit
    first_attempt: dict[str, int] = field(default_factory=dict)  # task -> accepted on the first attempt
    retries: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # task -> reason -> retried/passed

    def add(self, task: str, key: str, n: int = 1) -> None:
        self.by_task.setdefault(task, {"planned": 0, "unchanged": 0, "accepted": 0, "rejected": 0})
        self.by_task[task][key] = self.by_task[task].get(key, 0) + n

    def reason(self, task: str, reason: str, n: int = 1) -> None:
        r = self.reasons.setdefault(task, {})
        r[reason] = r.get(reason, 0) + n


def count_catalog_rows(uri: str, limit: int | None) -> int:
    """Rows of the catalog (Parquet footers), at most ``limit``."""
    loc, files = read.catalog_files(uri)
    n = read.count_rows(files, loc.fs)
    return min(n, limit) if limit else n


def count_planned(c: Counts, tasks, work) -> None:
    """The planned items per task (``planned_all``: before the incremental anti-join)."""
    planned = task_counts(work)
    for t in tasks:
        c.add(t, "planned", 0)
        c.by_task[t]["planned_all"] = planned.get(t, 0)


def to_generate(c: Counts) -> int:
    """Items planned across tasks: the progress bar's total for a full run."""
    return sum(v.get("planned_all", 0) for v in c.by_task.values())


def count_staged(c: Counts, tasks, files: StagedFiles) -> None:
    """Every task's outcomes from the staged files (before the commit, which reads them)."""
    for task in tasks:
        count_task(c, task, files.generated, files.validate, files.fs, files.plan)


def count_task(c: Counts, task: str, gen_files: list[str], val_files: list[str], fs,
               plan_files: list[str] = ()) -> None:
    """Add one task's outcomes in the staged files (validation, plan and generation rejects,
    accepted texts, tokens, retries) to ``c``."""
    c.add(task, "planned", 0)

    def reasons(files):
        return storage.retry_io(lambda: pads.dataset(files, filesystem=fs).to_table(
            columns=["reason"], filter=pads.field("task") == task), "count rejects")

    if plan_files:
        v = reasons(plan_files)
        c.add(task, "rejected", v.num_rows)
        c.by_task[task]["planned_all"] = c.by_task[task].get("planned_all", 0) + v.num_rows
        for r, n in value_counts(v.column("reason")):
            c.reason(task, r, n)
    if val_files:
        v = reasons(val_files)
        c.invalid = v.num_rows  # one row per task per bad catalog row
        for r, n in value_counts(v.column("reason")):
            c.reason(task, r, n)
    if not gen_files:
        bt = c.by_task[task]
        bt["planned"] = bt.pop("planned_all", 0)
        bt["unchanged"] = bt["planned"] - bt["accepted"] - bt["rejected"]
        return
    g = storage.retry_io(partial(generated_counts, gen_files, fs, task), "count generated")
    for status in ("accepted", "rejected"):
        c.add(task, status, g["status"].get(status, 0))
    c.first_attempt[task] = c.first_attempt.get(task, 0) + g["first_attempt"]
    if g["retried"]:
        c.retries[task] = g["retried"]
    for r, n in g["reasons"].items():
        c.reason(task, r, n)
    for f, n in g["flags"].items():
        c.flags.setdefault(task, {})[f] = c.flags.get(task, {}).get(f, 0) + n
    c.tokens_in += g["tokens_in"]
    c.tokens_out += g["tokens_out"]
    bt = c.by_task[task]
    bt["planned"] = bt.pop("planned_all", bt["accepted"] + bt["rejected"])
    bt["unchanged"] = bt["planned"] - bt["accepted"] - bt["rejected"]


def generated_counts(gen_files: list[str], fs, task: str) -> dict[str, Any]:
    """One task's outcomes in the staged generation files, streamed a batch at a time."""
    out: dict[str, Any] = {"status": {}, "reasons": {}, "flags": {}, "tokens_in": 0, "tokens_out": 0,
                           "first_attempt": 0, "retried": {}}

    def bump(d: dict, k: str, n: int) -> None:
        d[k] = d.get(k, 0) + n

    ds = pads.dataset(gen_files, filesystem=fs)
    has_reason = "retry_reason" in ds.schema.names  # staged by an earlier version (a resume)
    scan = ds.scanner(
        columns=["status", "reason", "tokens_in", "tokens_out", "input_flags", "attempts"]
        + (["retry_reason"] if has_reason else []),
        filter=pads.field("task") == task)
    for b in scan.to_batches():
        t = pa.Table.from_batches([b])
        final = t.filter(pc.not_equal(t.column("status"), "retry"))
        first = pc.equal(final.column("attempts"), 1)
        out["first_attempt"] += int(pc.sum(pc.and_(first, pc.equal(final.column("status"), "accepted")))
                                    .as_py() or 0)
        if has_reason:  # per reason of the rejected attempt: retried items, and those that passed
            again = final.filter(pc.invert(first))
            for status, reason in zip(again.column("status").to_pylist(), again.column("retry_reason").to_pylist()):
                r = out["retried"].setdefault(reason or "unknown", {"retried": 0, "passed": 0})
                r["retried"] += 1
                r["passed"] += status == "accepted"
        for status, n in value_counts(t.column("status")):
            bump(out["status"], status, n)
        rejected = t.filter(pc.equal(t.column("status"), "rejected"))
        for r, n in value_counts(rejected.column("reason")):
            bump(out["reasons"], r, n)
        # Every item's flags once (its final row, accepted or rejected): a row flagged for PII
        # is as likely to be rejected as accepted, and counting accepted rows alone hid it.
        for flags, n in value_counts(final.column("input_flags")):
            for f in flags.split(","):
                bump(out["flags"], f, n)
        out["tokens_in"] += int(pc.sum(t.column("tokens_in")).as_py() or 0)
        out["tokens_out"] += int(pc.sum(t.column("tokens_out")).as_py() or 0)
    return out


def task_counts(work) -> dict[str, int]:
    """Items per task: the task column streamed to the driver a batch at a time (no shuffle)."""
    counts: dict[str, int] = {}
    for b in work.select_columns(["task"]).iter_batches(batch_format="pyarrow", batch_size=65_536):
        for task, n in value_counts(b.column("task")):
            counts[task] = counts.get(task, 0) + n
    return counts


def value_counts(col: pa.ChunkedArray) -> list[tuple[str, int]]:
    vc = pc.value_counts(col)
    return [(v["values"].as_py(), v["counts"].as_py()) for v in vc if v["values"].as_py() is not None]



def build_record(spec: JobSpec, run_id: str, c: Counts, started: dt.datetime, t0: float,
                 versions: dict[str, int | None], model_id: str, generate_s: float | None,
                 progress: list) -> dict[str, Any]:
    """The run record: what ran, its counts, tokens, timing and the table versions it made."""
    wall = time.monotonic() - t0
    accepted = sum(v["accepted"] for v in c.by_task.values())
    gen_s = wall if generate_s is None else generate_s
    return {
        "run_id": run_id, "name": spec.name, "status": "committed", "mode": spec.mode,
        "spec": spec.redacted_dict(), "started_at": started.isoformat(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "model": {"source": spec.model.source, "identity": model_id},
        "counts": {
            "read": c.read, "valid": c.read - c.invalid, "invalid": c.invalid,
            "accepted": accepted,
            "rejected": sum(v["rejected"] for v in c.by_task.values()),
            "unchanged": sum(v["unchanged"] for v in c.by_task.values()),
            "by_task": c.by_task, "rejects_by_reason": c.reasons, "input_flags": c.flags,
            "deleted": c.deleted, "on_delete": spec.on_delete, "resumed": c.resumed,
            "reviews_dropped": c.reviews_dropped, "feed_unknown_skus": c.feed_unknown_skus,
            "feed_beyond_limit": c.feed_beyond_limit,
            # Guard outcomes by attempt: accepted at once, and per reason of a rejected
            # attempt how many items were retried and how many of those then passed.
            "accepted_first_attempt": c.first_attempt, "retries_by_reason": c.retries,
        },
        "tokens": {"in": c.tokens_in, "out": c.tokens_out},
        "timing": {"wall_s": wall, "generate_s": gen_s,
                   "rows_per_s": accepted / wall if wall else 0.0,
                   "output_tokens_per_s": c.tokens_out / gen_s if gen_s else 0.0},
        "tables": versions,
        "progress": progress,
    }
