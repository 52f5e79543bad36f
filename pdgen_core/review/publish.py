"""Publish a reviewed staged run through ``versions.promote``.

Per task: when the spec sets ``output.max_defect_rate``, every sampled row has a decision and the
sample's 95% upper bound on the defect rate (rejected / reviewed, ``stats.upper_bound``) is under
it, every row except the rejected ones is published (mode ``all``); otherwise only the approved
and edited rows are (mode ``approved_only``; the rest are not published, and a later run proposes
them again). Edits are published with ``lineage: human_edit`` and the row's input fingerprint, so
a refresh leaves them alone until an input changes. Rejected rows go to ``rejects/<task>`` (stage
``review``, reason ``review_rejected``, the reviewer's reason as detail) with their input
fingerprint, so a refresh does not generate them again until an input changes
(``incremental.guard_rejected_keys``). The run record's ``publish.review`` says which mode each
task took, and why.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, Transaction, write_deltalake

from pdgen_core import migrate, run_record, storage, versions
from pdgen_core.review import decisions as dec
from pdgen_core.review import queue, stats
from pdgen_core.stages import commit


def max_defect_rate(rec: dict) -> float | None:
    return ((rec.get("spec") or {}).get("output") or {}).get("max_defect_rate")


def valid_decisions(output_uri: str, run_id: str, task: str) -> dict[tuple, dict]:
    """The latest decision per row, kept only while it judges the row's current proposed text."""
    rows = {queue.key_of(r): r for r in queue.staged_rows(output_uri, run_id, task)}
    return {k: d for k, d in dec.latest(output_uri, task, run_id).items()
            if k in rows and d["text_fingerprint"] == dec.text_fingerprint(rows[k]["text"])}


def task_summary(output_uri: str, run_id: str, task: str, limit: float | None,
                 decided: dict[tuple, dict] | None = None) -> dict[str, Any]:
    """What the reviewers decided on ``task`` (``valid_decisions``, read here unless given) and
    which mode a publish would take."""
    qs = queue.build(output_uri, run_id, task, limit)
    if decided is None:
        decided = valid_decisions(output_uri, run_id, task)
    sample = [k for q in qs for k in q.sample]
    reviewed = [k for k in sample if k in decided]
    bad = sum(1 for k in reviewed if decided[k]["decision"] == "reject")
    bound = stats.upper_bound(bad, len(reviewed))
    complete = len(reviewed) == len(sample)
    mode = ("all" if limit is not None and complete and bound is not None and bound < limit
            else "approved_only")
    n = lambda what: sum(1 for d in decided.values() if d["decision"] == what)  # noqa: E731
    return {"mode": mode, "rows": sum(q.population for q in qs), "sample": len(sample),
            "sample_reviewed": len(reviewed), "sample_rejected": bad, "upper_bound": bound,
            "confidence": stats.CONFIDENCE, "max_defect_rate": limit,
            "approved": n("approve"), "edited": n("edit"), "rejected": n("reject"),
            "borderline": sum(len(q.borderline) for q in qs)}


def _chosen(output_uri: str, run_id: str, task: str, mode: str, decided: dict[tuple, dict]) -> pa.Table:
    """The staged rows (``MERGE_SCHEMA``) to publish: tombstones always, texts by mode, edits applied."""
    loc = commit.staged_table(storage.resolve(output_uri), run_id, task)
    t = pa.Table.from_batches(list(commit.staged_source(loc)), schema=commit.MERGE_SCHEMA)
    out = []
    for r in t.to_pylist():
        d = decided.get(queue.key_of(r))
        if r["_op"] == "upsert":
            if d is not None and d["decision"] == "reject":
                continue
            if mode == "approved_only" and d is None:
                continue
            if d is not None and d["decision"] == "edit":
                r.update(text=d["edited_text"], lineage="human_edit", generated_at=d["decided_at"])
        out.append(r)
    return pa.Table.from_pylist(out, schema=commit.MERGE_SCHEMA)


def _reject_rows(output_uri: str, run_id: str, task: str, decided: dict[tuple, dict]) -> pa.Table:
    rows = []
    for r in queue.staged_rows(output_uri, run_id, task):
        d = decided.get(queue.key_of(r))
        if d is None or d["decision"] != "reject":
            continue
        rows.append({"sku": r["sku"], "task": task, "locale": r["locale"], "variant": r["variant"],
                     "stage": "review", "reason": "review_rejected",
                     "detail": f"{d['reviewer']}: {d['reason'] or '(no reason given)'}; text: {r['text'][:300]}",
                     "attempts": r["attempts"], "run_id": run_id, "rejected_at": d["decided_at"],
                     "input_fingerprint": r["input_fingerprint"], "finish_reason": r["finish_reason"]})
    return pa.Table.from_pylist(rows, schema=commit.REJECT_SCHEMA)


def _append_rejects(output_uri: str, run_id: str, task: str, rows: pa.Table) -> int | None:
    """One rejects version per reviewed run (its own app transaction: a repeat is a no-op)."""
    if not rows.num_rows:
        return None
    loc = storage.resolve(output_uri).child("rejects", task)
    app = f"pdgen-review-{run_id}"
    table = commit.open_table(loc)
    if table is not None and table.transaction_version(app) is not None:
        return table.version()
    write_deltalake(loc.uri, rows, mode="append", schema_mode="merge", storage_options=storage.table_options(loc),
                    commit_properties=CommitProperties(custom_metadata={"pdgen.run_id": run_id, "pdgen.review": "true"},
                                                       app_transactions=[Transaction(app, 1)]))
    return commit.open_table(loc).version()


def publish_reviewed(output_uri: str, run_id: str, allow_older: bool = False) -> dict[str, Any]:
    """Promote ``run_id`` taking what its review decided; returns {"versions", "review", "rejects"}."""
    rec = run_record.read_record(output_uri, run_id)
    if rec is None:
        raise run_record.unknown_promote(output_uri, run_id)
    migrate.check_output(output_uri, migrate.tasks_of(output_uri))  # before its rejects are appended
    limit = max_defect_rate(rec)
    tasks = versions.staged_tasks(rec)
    decided = {t: valid_decisions(output_uri, run_id, t) for t in tasks}  # read once per task
    review = {t: task_summary(output_uri, run_id, t, limit, decided[t]) for t in tasks}
    chosen = {t: _chosen(output_uri, run_id, t, review[t]["mode"], decided[t]) for t in tasks}
    rejected = {t: _reject_rows(output_uri, run_id, t, decided[t]) for t in tasks}
    for t in tasks:
        review[t]["published_rows"] = int(pc.sum(pc.equal(chosen[t].column("_op"), "upsert")).as_py() or 0)
    at = dt.datetime.now(dt.timezone.utc).isoformat()

    def select(task, _staged):
        return lambda: pa.RecordBatchReader.from_batches(commit.MERGE_SCHEMA, chosen[task].to_batches())

    # The rejects first, each its own app transaction: a publish that dies between the two is run
    # again, its rejects append is then a no-op and the promote goes ahead. (Promote first, and a
    # crash before the rejects lost them: the staged run is gone once promoted.)
    rej = {t: storage.retry_io(lambda t=t: _append_rejects(output_uri, run_id, t, rejected[t]),
                               f"review rejects/{t}") for t in tasks}
    done = migrate.promote(output_uri, run_id, allow_older=allow_older, select=select,
                           review={"reviewed_at": at, "tasks": review})
    queue.staged_rows.cache_clear()
    return {"versions": done, "review": review, "rejects": rej}
