"""Commit: one atomic Delta Lake version per table per run, idempotent by run id.

Content is merged (upsert on sku, locale, variant) so a table holds the current text per key and
every past version stays readable (time travel). Rejects are appended. Each commit carries a Delta
app transaction ``pdgen-run-<run_id>``: a resumed run sees it and does not commit twice. The data
streams from the staged Parquet files to delta-rs (a RecordBatchReader), never as one table in the
driver's memory.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from pdgen_core import storage

KEY = ("sku", "locale", "variant")
CONTENT_SCHEMA = pa.schema([
    ("sku", pa.string()), ("locale", pa.string()), ("task", pa.string()), ("variant", pa.string()),
    ("text", pa.string()), ("input_fingerprint", pa.string()), ("template", pa.string()),
    ("model", pa.string()), ("adapter", pa.string()), ("sampling_hash", pa.string()),
    ("run_id", pa.string()), ("generated_at", pa.timestamp("us", tz="UTC")),
    ("tokens_in", pa.int64()), ("tokens_out", pa.int64()), ("attempts", pa.int32()),
])
REJECT_SCHEMA = pa.schema([
    ("sku", pa.string()), ("task", pa.string()), ("locale", pa.string()), ("variant", pa.string()),
    ("stage", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
    ("attempts", pa.int32()), ("run_id", pa.string()), ("rejected_at", pa.timestamp("us", tz="UTC")),
])


def app_id(run_id: str) -> str:
    return f"pdgen-run-{run_id}"


def open_table(loc: storage.Location, version: int | None = None) -> DeltaTable | None:
    try:
        return DeltaTable(loc.uri, storage_options=storage.table_options(loc), version=version)
    except TableNotFoundError:
        return None


def committed_version(loc: storage.Location, run_id: str) -> int | None:
    """The table version if this run already committed to ``loc``, else None."""
    dt = open_table(loc)
    if dt is None or dt.transaction_version(app_id(run_id)) is None:
        return None
    return dt.version()


def _props(run_id: str, extra: dict | None = None) -> CommitProperties:
    return CommitProperties(
        custom_metadata={"pdgen.run_id": run_id, **(extra or {})},
        app_transactions=[Transaction(app_id(run_id), 1)],
        max_commit_retries=20,
    )


def staged_reader(files: list[str], fs, schema: pa.Schema, flt) -> pa.RecordBatchReader:
    ds = pads.dataset(files, filesystem=fs, format="parquet")
    scanner = ds.scanner(columns=schema.names, filter=flt, batch_size=8192)
    return pa.RecordBatchReader.from_batches(
        schema, (b.cast(schema) for b in scanner.to_batches() if b.num_rows)
    )


def merge_content(loc: storage.Location, source: pa.RecordBatchReader, run_id: str,
                  extra_meta: dict | None = None) -> int:
    """Upsert ``source`` into the content table at ``loc``; returns the new version."""
    done = committed_version(loc, run_id)
    if done is not None:
        return done
    dt = open_table(loc)
    if dt is None:
        write_deltalake(loc.uri, source, mode="append", storage_options=storage.table_options(loc),
                        commit_properties=_props(run_id, extra_meta))
        return open_table(loc).version()
    pred = " AND ".join(f"t.{k} = s.{k}" for k in KEY)
    (dt.merge(source, predicate=pred, source_alias="s", target_alias="t",
              commit_properties=_props(run_id, extra_meta))
       .when_matched_update_all().when_not_matched_insert_all().execute())
    return open_table(loc).version()


def append_rejects(loc: storage.Location, source: pa.RecordBatchReader, run_id: str) -> int:
    done = committed_version(loc, run_id)
    if done is not None:
        return done
    write_deltalake(loc.uri, source, mode="append", storage_options=storage.table_options(loc),
                    commit_properties=_props(run_id), schema_mode="merge")
    return open_table(loc).version()
