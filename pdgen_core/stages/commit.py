"""Commit: one atomic Delta Lake version per table per run, idempotent by run id.

Content is merged (upsert on sku, locale, variant) so a table holds the current text per key and
every past version stays readable (time travel). Rejects are appended. Each commit carries a Delta
app transaction ``pdgen-run-<run_id>``: a resumed run sees it and does not commit twice. The data
streams from the staged Parquet files to delta-rs (a RecordBatchReader), never as one table in the
driver's memory.

The publish gate lives here: ``content/<task>``'s latest version is always the published content,
because only a published run commits to it. A run that is not published (``output.publish:
staged``, or below ``guardrails.min_accept_rate``) commits its rows, upserts and tombstones alike
(``MERGE_SCHEMA``), to a Delta table of its own, ``staged/<run_id>/<task>/``, under the same app
transaction; ``pdgen promote`` merges that table into ``content/<task>`` as one version, again
under the run's transaction, so a promote is exactly once too and a run's rows reach the content
table once, whichever way they go.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from pdgen_core import storage
from pdgen_core.staging import RunLayout, StagedFiles, staged_files

KEY = ("sku", "locale", "variant")
CONTENT_SCHEMA = pa.schema([
    ("sku", pa.string()), ("locale", pa.string()), ("task", pa.string()), ("variant", pa.string()),
    ("text", pa.string()), ("label", pa.string()), ("input_fingerprint", pa.string()),
    ("template", pa.string()), ("model", pa.string()), ("adapter", pa.string()), ("sampling_hash", pa.string()),
    ("run_id", pa.string()), ("generated_at", pa.timestamp("us", tz="UTC")),
    ("tokens_in", pa.int64()), ("tokens_out", pa.int64()), ("attempts", pa.int32()),
    # stop | length_trimmed (cut at max_tokens, kept to its last complete sentence)
    ("finish_reason", pa.string()),
    # The fields the task's template read (JSON, the plan's fields_json): what `pdgen diff` names
    # when an input changed. Null in rows committed before the column existed.
    ("inputs", pa.string()),
    # What makes a row borderline for `pdgen review` (issue 21): the catalog fields' hygiene flags
    # (pii, html, injection, ...) and why the attempt before this one was rejected (null on a
    # first attempt). ``lineage``: null for model text, ``human_edit`` for a reviewer's edit.
    ("input_flags", pa.string()), ("retry_reason", pa.string()), ("lineage", pa.string()),
])
REJECT_SCHEMA = pa.schema([
    ("sku", pa.string()), ("task", pa.string()), ("locale", pa.string()), ("variant", pa.string()),
    ("stage", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
    ("attempts", pa.int32()), ("run_id", pa.string()), ("rejected_at", pa.timestamp("us", tz="UTC")),
    # The rejected item's inputs (null for catalog rows rejected before planning): a refresh does
    # not regenerate what the guardrails rejected for the same inputs, model and seed.
    ("input_fingerprint", pa.string()),
    # The engine's finish for generated rejects (stop | length); null for rows never generated.
    ("finish_reason", pa.string()),
])


def app_id(run_id: str) -> str:
    return f"pdgen-run-{run_id}"


def open_table(loc: storage.Location, version: int | None = None) -> DeltaTable | None:
    try:
        return DeltaTable(loc.uri, storage_options=storage.table_options(loc), version=version)
    except TableNotFoundError:
        return None


def committed_version(loc: storage.Location, run_id: str, txn: int = 1) -> int | None:
    """The table version if this run already committed to ``loc`` (its app transaction at
    ``txn`` or later), else None. A run's commit is transaction 1; the promote of a run that
    ``pdgen migrate`` moved out of the content table is transaction 2 (its first commit's
    transaction stays in the table's log)."""
    dt = open_table(loc)
    seen = None if dt is None else dt.transaction_version(app_id(run_id))
    if seen is None or seen < txn:
        return None
    return dt.version()


def _props(run_id: str, extra: dict | None = None, txn: int = 1) -> CommitProperties:
    return CommitProperties(
        custom_metadata={"pdgen.run_id": run_id, **(extra or {})},
        app_transactions=[Transaction(app_id(run_id), txn)],
        max_commit_retries=20,
    )


def staged_table(out: storage.Location, run_id: str, task: str) -> storage.Location:
    """Where a run that is not published keeps its content rows until ``pdgen promote``."""
    return out.child("staged", run_id, task)


def staged_reader(files: list[str], fs, schema: pa.Schema, flt) -> pa.RecordBatchReader:
    ds = pads.dataset(files, filesystem=fs, format="parquet")
    scanner = ds.scanner(columns=schema.names, filter=flt, batch_size=8192)
    return pa.RecordBatchReader.from_batches(
        schema, (b.cast(schema) for b in scanner.to_batches() if b.num_rows)
    )


def current_version(loc: storage.Location) -> int | None:
    dt = open_table(loc)
    return None if dt is None else dt.version()


MERGE_SCHEMA = CONTENT_SCHEMA.append(pa.field("_op", pa.string()))
# Staged generation rows -> content columns: ``inputs`` is the plan's ``fields_json``.
# ``lineage`` is null: model text (``human_edit`` comes from `pdgen review`). In schema order.
_CONTENT_SOURCE = {"inputs": pads.field("fields_json"), "lineage": pads.scalar(pa.scalar(None, pa.string()))}
_CONTENT_PROJ = {n: _CONTENT_SOURCE.get(n, pads.field(n)) for n in CONTENT_SCHEMA.names}


def upserts_and_deletes(gen_files: list[str], accepted, deleted_files: list[str], fs) -> pa.RecordBatchReader:
    """One merge source: accepted rows (``_op`` upsert) then tombstoned keys (``_op`` delete)."""
    def batches():
        if gen_files:
            scan = pads.dataset(gen_files, filesystem=fs).scanner(
                columns=_CONTENT_PROJ, filter=accepted, batch_size=8192)
            for b in scan.to_batches():
                if b.num_rows:
                    yield _with_op(b.cast(CONTENT_SCHEMA), "upsert")
        if deleted_files:
            for b in pads.dataset(deleted_files, filesystem=fs).to_batches(batch_size=8192):
                if b.num_rows:
                    cols = [b.column(f.name).cast(f.type) if f.name in b.schema.names
                            else pa.nulls(b.num_rows, f.type) for f in CONTENT_SCHEMA]
                    yield _with_op(pa.RecordBatch.from_arrays(cols, schema=CONTENT_SCHEMA), "delete")
    return pa.RecordBatchReader.from_batches(MERGE_SCHEMA, batches())


def _with_op(b: pa.RecordBatch, op: str) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(list(b.columns) + [pa.array([op] * b.num_rows)], schema=MERGE_SCHEMA)


def _drop_op(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    def batches():
        for b in reader:
            keep = b.filter(pc.equal(b.column("_op"), "upsert"))
            if keep.num_rows:
                yield pa.RecordBatch.from_arrays(keep.columns[:-1], schema=CONTENT_SCHEMA)
    return pa.RecordBatchReader.from_batches(CONTENT_SCHEMA, batches())


def merge_content(loc: storage.Location, source: Callable[[], pa.RecordBatchReader], run_id: str,
                  extra_meta: dict | None = None, txn: int = 1) -> int:
    """Upsert/delete ``source()`` (``MERGE_SCHEMA`` rows) into the content table at ``loc`` as one
    version (the run's app transaction ``txn``: see ``committed_version``); returns it.
    ``source`` is a factory: a lost creation race re-reads it for a merge."""
    done = committed_version(loc, run_id, txn)
    if done is not None:
        return done
    dt = open_table(loc)
    if dt is None:
        try:
            write_deltalake(loc.uri, _drop_op(source()), mode="error", schema_mode=None,
                            storage_options=storage.table_options(loc),
                            commit_properties=_props(run_id, extra_meta, txn))
            return open_table(loc).version()
        except Exception as exc:  # another run created the table first: merge into theirs
            dt = open_table(loc)
            if dt is None:
                raise exc
            if committed_version(loc, run_id, txn) is not None:
                return dt.version()  # ours: S3 took the commit but its answer was lost
    pred = " AND ".join(f"t.{k} = s.{k}" for k in KEY)
    upsert, delete = "s._op = 'upsert'", "s._op = 'delete'"
    # merge_schema: tables committed before a column existed (finish_reason) gain it.
    (dt.merge(source(), predicate=pred, source_alias="s", target_alias="t",
              commit_properties=_props(run_id, extra_meta, txn), merge_schema=True)
       .when_matched_delete(predicate=delete)
       .when_matched_update_all(predicate=upsert, except_cols=["_op"])
       .when_not_matched_insert_all(predicate=upsert, except_cols=["_op"])
       .execute())
    return open_table(loc).version()


def ensure_content(loc: storage.Location, run_id: str | None = None) -> int:
    """The content table at ``loc``, created empty (``CONTENT_SCHEMA``) if there is none; returns
    its version. Every task has a table, so ``show``, ``versions``, ``rollback`` and a downstream
    ``read_delta`` work before its first accepted row. With ``run_id`` the creation is that run's
    commit (its app transaction: a resume finds it); without, it belongs to no run, so a staged
    run that creates it can still be promoted into it."""
    dt = open_table(loc)
    if dt is not None:
        return dt.version()
    props = _props(run_id) if run_id else CommitProperties(custom_metadata={"pdgen.created": "empty"})
    try:
        write_deltalake(loc.uri, CONTENT_SCHEMA.empty_table(), mode="error",
                        storage_options=storage.table_options(loc), commit_properties=props)
    except Exception:
        if open_table(loc) is None:  # not a lost creation race: a real failure
            raise
    return open_table(loc).version()


def stage_content(loc: storage.Location, source: Callable[[], pa.RecordBatchReader], run_id: str) -> int:
    """Write ``source()`` (``MERGE_SCHEMA``: upserts and tombstones) as the run's staged table at
    ``loc`` (``staged_table``), once: a resumed run finds its transaction there."""
    done = committed_version(loc, run_id)
    if done is not None:
        return done
    try:
        write_deltalake(loc.uri, source(), mode="error", storage_options=storage.table_options(loc),
                        commit_properties=_props(run_id))
    except Exception:
        done = committed_version(loc, run_id)
        if done is None:  # not ours from an answer S3 lost: a real failure
            raise
        return done
    return open_table(loc).version()


def staged_source(loc: storage.Location) -> pa.RecordBatchReader:
    """A staged table's rows (``MERGE_SCHEMA``) as a merge source for ``merge_content``."""
    dt = open_table(loc)
    if dt is None:
        raise FileNotFoundError(f"no staged table at {loc.uri}")
    ds = dt.to_pyarrow_dataset(filesystem=storage.table_filesystem(loc))
    cols = {n: (pads.field(n) if n in ds.schema.names else pads.scalar(None)) for n in MERGE_SCHEMA.names}

    def batches():
        for b in ds.scanner(columns=cols, batch_size=8192).to_batches():
            if b.num_rows:
                yield pa.RecordBatch.from_arrays(
                    [b.column(n).cast(MERGE_SCHEMA.field(n).type) for n in MERGE_SCHEMA.names],
                    schema=MERGE_SCHEMA)
    return pa.RecordBatchReader.from_batches(MERGE_SCHEMA, batches())


def append_rejects(loc: storage.Location, source: Callable[[], pa.RecordBatchReader], run_id: str) -> int:
    """Append ``source()`` to the rejects table at ``loc`` as one version (once per run)."""
    done = committed_version(loc, run_id)
    if done is not None:
        return done
    write_deltalake(loc.uri, source(), mode="append", storage_options=storage.table_options(loc),
                    commit_properties=_props(run_id), schema_mode="merge")
    return open_table(loc).version()


# -- the run's commit: one Delta version per table ------------------------------------------------

# Rows rejected before generation have no finish_reason column: null.
_REJECT_PROJ = {n: pads.field(n) for n in REJECT_SCHEMA.names if n != "finish_reason"} | {
    "finish_reason": pads.scalar(None)}
_GEN_REJECT_PROJ = {**_REJECT_PROJ, "rejected_at": pads.field("generated_at"),
                    "finish_reason": pads.field("finish_reason")}


def commit_run(layout: RunLayout, files: StagedFiles, tasks, counts, tombstone: bool,
               publish: bool = True) -> dict[str, int | None]:
    """One Delta commit per table of the run; returns each table's version (None: no rejects
    table touched). Published runs commit to ``content/<task>``; the others to their staged table
    (``staged/<run_id>/<task>``, key ``staged/<run_id>/<task>`` in the result), and make sure the
    content table exists (empty). Every step is safe to repeat (reads, and commits that find their
    own run's transaction), so a transient S3 error on the driver re-reads that step instead of
    failing the run (listings retry inside ``storage.list_files``). ``counts``
    (``run_record.Counts``, filled from the same files) says what there is to commit."""
    versions: dict[str, int | None] = {}
    for task in tasks:
        deleted = staged_files(layout.deleted(task))
        counts.deleted[task] = (storage.retry_io(pads.dataset(deleted, filesystem=files.fs).count_rows,
                                                 "count deleted") if deleted else 0)
        tombstones = deleted if tombstone else []
        if publish:
            versions[f"content/{task}"] = _commit_content(layout, files, task, counts, tombstones)
        else:
            loc = staged_table(layout.out, layout.run_id, task)
            versions[f"staged/{layout.run_id}/{task}"] = _stage_task(layout, files, task, loc, tombstones)
            storage.retry_io(partial(ensure_content, layout.content(task)), f"create content/{task}")
        n_rej = counts.invalid + counts.by_task[task]["rejected"]
        versions[f"rejects/{task}"] = _commit_rejects(layout, files, task) if n_rej else None
    return versions


def _accepted(task: str):
    return (pads.field("task") == task) & (pads.field("status") == "accepted")


def _commit_content(layout: RunLayout, files: StagedFiles, task: str, counts,
                    tombstones: list[str]) -> int:
    loc = layout.content(task)
    if not (counts.by_task[task]["accepted"] or tombstones):
        # Nothing to merge: the table as it is, created empty (as this run's commit) if new.
        return storage.retry_io(partial(ensure_content, loc, layout.run_id), f"commit content/{task}")
    src = partial(upserts_and_deletes, files.generated, _accepted(task), tombstones, files.fs)
    return storage.retry_io(partial(merge_content, loc, src, layout.run_id), f"commit content/{task}")


def _stage_task(layout: RunLayout, files: StagedFiles, task: str, loc: storage.Location,
                tombstones: list[str]) -> int:
    """The run's rows for ``task`` (possibly none) as its staged table, for ``pdgen promote``."""
    src = partial(upserts_and_deletes, files.generated, _accepted(task), tombstones, files.fs)
    return storage.retry_io(partial(stage_content, loc, src, layout.run_id), f"stage content/{task}")


def _commit_rejects(layout: RunLayout, files: StagedFiles, task: str) -> int:
    is_task = pads.field("task") == task
    parts = [(f, is_task, _REJECT_PROJ) for f in (files.validate, files.plan) if f]
    if files.generated:
        parts.append((files.generated, is_task & (pads.field("status") == "rejected"), _GEN_REJECT_PROJ))
    src = partial(_concat, parts, REJECT_SCHEMA, files.fs)
    return storage.retry_io(partial(append_rejects, layout.rejects(task), src, layout.run_id),
                            f"commit rejects/{task}")


def _concat(parts, schema: pa.Schema, fs) -> pa.RecordBatchReader:
    """Stream (files, filter, projection) parts as one reader of ``schema``."""
    def batches():
        for files, flt, proj in parts:
            d = pads.dataset(files, filesystem=fs)
            for b in d.scanner(columns=proj, filter=flt, batch_size=8192).to_batches():
                if b.num_rows:
                    yield pa.RecordBatch.from_arrays(
                        [b.column(n).cast(schema.field(n).type) for n in schema.names], schema=schema)
    return pa.RecordBatchReader.from_batches(schema, batches())
