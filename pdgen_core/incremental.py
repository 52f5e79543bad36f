"""Incremental planning: only work items whose fingerprint differs from the committed content.

All of it runs in Ray (``joins``: broadcast for small key sets, hash join for large), never on the
driver:

- ``changed``: work items anti-joined with the current content's (key, fingerprint) pairs;
- ``resume``: the same anti-join against the fingerprints already staged by a crashed attempt of
  this run, so a resumed run regenerates at most the blocks that were being written;
- ``deleted``: current keys whose sku has left the catalog (``on_delete: tombstone`` removes them
  from the current version; history keeps them).

``narrow`` applies the first and the last to a run's plan, task by task.

A changes feed (``pdgen refresh --changes``) narrows the catalog to the skus it names and lays the
feed's fresher field values over the catalog's. Only those rows are read: the feed's skus are a
predicate on the sku column, pushed into the catalog's Parquet scan (Ray Data prunes row groups by
their footer statistics), and the committed content and rejects are read for those skus only
(Delta files pruned by the min/max sku of the table's log, then row groups by pyarrow's scan).
"""

from __future__ import annotations

import pyarrow as pa

from pdgen_core import joins, storage
from pdgen_core.stages import commit
from pdgen_core.stages.read import catalog_files
from pdgen_core.staging import RunLayout

JOIN_KEY = ("sku", "locale", "variant", "input_fingerprint")


def read_table(loc: storage.Location, columns: list[str], skus: list[str] | None = None):
    """The latest version of a Delta table as a Ray Dataset, or None when there is no table (or
    it lacks one of ``columns``). With ``skus`` (a changes feed's), only the rows of those skus:
    files whose min/max sku in the Delta log cannot hold one are not opened (``prune_files``),
    and row groups are pruned by their statistics in pyarrow's scan.

    The file list comes from the Delta log; the files are read through our own pyarrow
    filesystem. (``ray.data.read_delta`` built its own S3 client from the storage options and
    did not reach a custom endpoint here.) pdgen's tables use no deletion vectors, so the
    active files are the version's rows.
    """
    import ray

    dt = commit.open_table(loc)
    if dt is None or not set(columns) <= {f.name for f in dt.schema().fields}:
        return None  # no table, or one written before a column existed
    if skus is not None:
        return _read_skus(dt, loc, columns, skus)
    files = [_fs_path(u) for u in dt.file_uris()]
    if not files:
        # An empty table (every task has one): deltalake's schema is arro3's; Ray pickles pyarrow.
        return ray.data.from_arrow(plain_schema(dt).empty_table().select(columns))
    if _table_bytes(dt) <= SMALL_TABLE_BYTES:
        # One pyarrow read here costs milliseconds; a Ray Data read costs seconds of task start-up
        # per table, and an incremental run reads two or three tables per task.
        return ray.data.from_arrow(storage.retry_io(
            lambda: _read_files(files, loc.fs, columns), f"read {loc.uri}"))
    return _ray_read(dt, files, loc.fs, columns)


def plain_schema(dt) -> pa.Schema:
    """The Delta table's schema as pyarrow's, view types as their plain forms (deltalake's schema
    is arro3's, which Ray cannot pickle; a merge's files hold ``string_view``)."""
    return storage.plain_types(pa.schema(dt.schema().to_arrow()).empty_table()).schema


def _ray_read(dt, files: list[str], fs, columns: list[str]):
    """Ray Data's read of a Delta table's data files, in plain types. A merge's files hold
    ``string_view``, which Ray's V1 Parquet reader cannot split into blocks ("Unhandled Arrow
    array type"); given the table's schema in plain types, pyarrow casts while it reads."""
    import ray

    plain = plain_schema(dt)
    schema = pa.schema([plain.field(c) for c in columns])
    ds = ray.data.read_parquet(files, filesystem=fs, columns=columns, schema=schema)
    return ds.map_batches(storage.plain_types, batch_format="pyarrow", zero_copy_batch=True)


# Delta tables whose files (every column) add up to at most this are read on the driver: the key
# columns of a few hundred thousand rows at most. Larger ones are read by Ray Data's tasks.
SMALL_TABLE_BYTES = 32 * 2**20


def _table_bytes(dt) -> int:
    import pyarrow.compute as pc

    sizes = pa.table(dt.get_add_actions(flatten=True)).column("size_bytes")
    return int(pc.sum(sizes).as_py() or 0)


def _read_files(files: list[str], fs, columns: list[str]) -> pa.Table:
    """The files one by one, as plain types, concatenated: a Delta merge writes string_view where
    the first write wrote string, and a file written before a column was added (schema
    evolution) gets nulls for it, as Ray Data's reader gives."""
    import pyarrow.parquet as pq

    parts = []
    for f in files:
        pf = pq.ParquetFile(fs.open_input_file(f))
        have = [c for c in columns if c in pf.schema_arrow.names]
        t = storage.plain_types(pf.read(columns=have))
        parts.append(pa.table({c: t.column(c) if c in have else pa.nulls(t.num_rows) for c in columns}))
    return pa.concat_tables(parts, promote_options="permissive")


def prune_files(dt, loc: storage.Location, skus: list[str]) -> list[str]:
    """The table's files (paths in ``loc.fs``) whose sku range, from the add actions' statistics
    in the Delta log, can hold one of ``skus``. A file without statistics is kept."""
    import bisect
    from urllib.parse import unquote

    actions = pa.table(dt.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    names = set(actions.column_names)
    lo = actions.column("min.sku").to_pylist() if "min.sku" in names else [None] * len(paths)
    hi = actions.column("max.sku").to_pylist() if "max.sku" in names else [None] * len(paths)
    wanted = sorted(skus)
    root = loc.path.rstrip("/")
    kept = []
    for path, a, b in zip(paths, lo, hi):
        if a is not None and b is not None:
            # The first wanted sku >= min; past max, no wanted sku is in [min, max]. A long max
            # may be stored cut to a prefix (a lower bound then): a sku it prefixes may still be
            # in the file.
            i = bisect.bisect_left(wanted, str(a))
            if i == len(wanted) or (wanted[i] > str(b) and not wanted[i].startswith(str(b))):
                continue
        kept.append(path if path.startswith(root + "/") else f"{root}/{unquote(path)}")
    return kept


def _read_skus(dt, loc: storage.Location, columns: list[str], skus: list[str]):
    """``read_table`` for the rows of ``skus``: the pruned files read through one pyarrow dataset
    with the sku filter (row groups pruned by their statistics), as plain types; the dataset's
    schema is the table's, so a file written before a column existed gives nulls for it. Files a
    Delta merge wrote hold ``string_view``, which pyarrow's filter does not bind against: those
    are read whole (they are pruned by the log's statistics all the same) and filtered after."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq
    import ray

    schema = plain_schema(dt)
    files = prune_files(dt, loc, skus) if skus else []
    if not files:
        return ray.data.from_arrow(schema.empty_table().select(columns))
    wanted = pa.array(sorted(set(skus)), pa.string())
    if _bytes_of(dt, loc, files) <= SMALL_TABLE_BYTES:
        def scan() -> pa.Table:
            views = [f for f in files if pa.types.is_string_view(
                pq.read_schema(loc.fs.open_input_file(f)).field("sku").type)]
            plain = [f for f in files if f not in views]
            parts = []
            if plain:
                ds = pads.dataset(plain, schema=schema, filesystem=loc.fs, format="parquet")
                parts.append(ds.to_table(columns=columns, filter=pc.field("sku").isin(wanted)))
            if views:
                t = _read_files(views, loc.fs, columns)
                parts.append(t.filter(pc.fill_null(pc.is_in(t.column("sku"), wanted), False)))
            return pa.concat_tables(parts, promote_options="permissive")
        return ray.data.from_arrow(storage.retry_io(scan, f"read {loc.uri} for {len(skus)} skus"))

    def keep(batch: pa.Table, wanted=wanted) -> pa.Table:
        batch = storage.plain_types(batch)
        return batch.filter(pc.fill_null(pc.is_in(batch.column("sku"), wanted), False))

    # Many files still (a feed naming many skus): Ray Data's tasks read them. The sku filter runs
    # after the cast to plain types (no ``is_in`` kernel takes ``string_view``).
    return _ray_read(dt, files, loc.fs, columns).map_batches(keep, batch_format="pyarrow")


def _bytes_of(dt, loc: storage.Location, files: list[str]) -> int:
    from urllib.parse import unquote

    actions = pa.table(dt.get_add_actions(flatten=True))
    root = loc.path.rstrip("/")
    size = dict(zip((f"{root}/{unquote(p)}" for p in actions.column("path").to_pylist()),
                    actions.column("size_bytes").to_pylist()))
    return sum(size.get(f, 0) for f in files)


def _fs_path(uri: str) -> str:
    return uri[len("s3://"):] if uri.startswith("s3://") else uri.removeprefix("file://")


def current_keys(loc: storage.Location, skus: list[str] | None = None):
    """(sku, locale, variant, input_fingerprint) of the latest content version (of ``skus``
    only, when given), or None."""
    return read_table(loc, list(JOIN_KEY), skus)


def anti_join(work, keys):
    """Work items whose (key, fingerprint) is not in ``keys``."""
    return joins.anti_join(work, keys, JOIN_KEY)


def guard_rejected_keys(loc: storage.Location, skus: list[str] | None = None):
    """(key, fingerprint) of items the guardrails rejected in earlier runs, or None.

    Generation is seeded per item, so the same inputs give the same text and the same rejection:
    a refresh skips them (they count as unchanged) until an input, the template, the model or the
    sampling changes. Engine errors are not in this set: they are retried.
    """
    import pyarrow.compute as pc

    def guard_only(batch: pa.Table) -> pa.Table:
        # "review": a reviewer's rejection (`pdgen review`, reason review_rejected) holds the same way.
        stage = pc.is_in(batch.column("stage"), pa.array(["guard", "review"]))
        keep = pc.and_(stage, pc.is_valid(batch.column("input_fingerprint")))
        return batch.filter(pc.fill_null(keep, False)).select(list(JOIN_KEY))

    rejects = read_table(loc, [*JOIN_KEY, "stage"], skus)
    return None if rejects is None else rejects.map_batches(guard_only, batch_format="pyarrow")


def staged_keys(files: list[str], fs):
    """Keys of the items a crashed run staged with their final row (accepted or rejected). An
    item with only ``retry`` rows staged (its final row in a file that was never written) is
    generated again."""
    import pyarrow.compute as pc
    import ray

    if not files:
        return None

    def final(batch: pa.Table) -> pa.Table:
        keep = pc.fill_null(pc.not_equal(batch.column("status"), "retry"), True)
        return storage.plain_types(batch.filter(keep).select(list(JOIN_KEY)))

    ds = ray.data.read_parquet(files, filesystem=fs, columns=[*JOIN_KEY, "status"])
    return ds.map_batches(final, batch_format="pyarrow")


def deleted_keys(current, valid_skus):
    """(sku, locale, variant) of the current content rows (``current``, from ``current_keys``)
    whose sku is no longer among the catalog's valid skus."""
    if current is None:
        return None
    return joins.anti_join(current.select_columns(["sku", "locale", "variant"]), valid_skus, ("sku",))


def read_changes(uri: str, mapping: dict[str, str] | None = None) -> pa.Table:
    """The changes feed: a Parquet file or folder with the sku column (``sku`` or the catalog's
    own name for it, e.g. ``product_id``) plus changed fields."""
    import pyarrow.dataset as pads

    loc, files = catalog_files(uri)
    t = pads.dataset(files, filesystem=loc.fs, format="parquet").to_table()
    t = storage.plain_types(t)
    source = (mapping or {}).get("sku", "sku")
    if "sku" not in t.column_names and source in t.column_names:
        t = t.rename_columns(["sku" if c == source else c for c in t.column_names])
    if "sku" not in t.column_names:
        names = "'sku'" + (f" or {source!r}" if source != "sku" else "")
        raise ValueError(f"changes feed {uri!r} has no {names} column; columns: {t.column_names}. "
                         "A feed is Parquet with the sku plus the changed fields.")
    return t


def feed_skus(feed: pa.Table) -> list[str]:
    """The distinct skus a changes feed names, as text (as ``apply_changes`` keys them)."""
    return sorted({str(v) for v in feed.column("sku").to_pylist() if v is not None})


def missing_feed_skus(feed: pa.Table, clean) -> set[str]:
    """Skus the changes feed names that the run's catalog rows do not have: nothing is
    regenerated for them. ``clean`` is the catalog narrowed to the feed's skus, so its sku column
    is at most the feed's size."""
    named = {str(v) for v in feed.column("sku").to_pylist() if v is not None}  # as apply_changes
    found = {s for b in clean.select_columns(["sku"]).iter_batches(batch_format="pyarrow")
             for s in b.column("sku").to_pylist() if s is not None}
    return named - found


def unknown_feed_skus(feed: pa.Table, clean) -> int:
    """How many of the feed's skus the run's catalog rows lack (see ``missing_feed_skus``)."""
    return len(missing_feed_skus(feed, clean))


def beyond_limit(missing: set[str], catalog) -> set[str]:
    """Those of ``missing`` that the catalog has past ``catalog.limit``: the run read only the
    first ``limit`` rows, so they were skipped, not unknown. Without a limit (or nothing missing)
    there is nothing to look up; otherwise one scan of the catalog's sku column, on the driver."""
    if not missing or not catalog.limit:
        return set()
    import pyarrow.dataset as pads

    loc, files = catalog_files(catalog.uri)
    column = catalog.columns.get("sku", "sku")
    scan = pads.dataset(files, filesystem=loc.fs, format="parquet").scanner(columns=[column])
    present = {str(v).strip() for b in scan.to_batches() for v in b.column(0).to_pylist() if v is not None}
    return {s for s in missing if s.strip() in present}


def feed_misses(feed: pa.Table, clean, catalog) -> tuple[list[str], list[str]]:
    """(skus not in the catalog, skus beyond ``catalog.limit``) of a changes feed, sorted: a
    feed that names skus the run cannot regenerate says so in the run record and the summary,
    instead of dropping them without a word."""
    missing = missing_feed_skus(feed, clean)
    past = beyond_limit(missing, catalog)
    return sorted(missing - past), sorted(past)


def apply_changes(raw, feed: pa.Table, mapping: dict[str, str]):
    """Keep the catalog rows whose sku is in the feed; the feed's other columns (canonical names
    or the catalog's own names) override the catalog's values."""
    inverse = {src: canon for canon, src in mapping.items()}
    cols = {inverse.get(c, c): feed.column(c) for c in feed.column_names}
    sku_col = "sku"
    skus = [None if v is None else str(v) for v in cols[sku_col].to_pylist()]
    overrides = {
        sku: {c: cols[c][i].as_py() for c in cols if c != sku_col}
        for i, sku in enumerate(skus) if sku is not None
    }

    def narrow(batch: pa.Table, overrides=overrides) -> pa.Table:
        rows = []
        for r in batch.to_pylist():
            key = None if r.get("sku") is None else str(r["sku"]).strip()
            if key in overrides:
                rows.append({**r, **{k: v for k, v in overrides[key].items() if k in r}})
        return pa.Table.from_pylist(rows, schema=batch.schema)

    return raw.map_batches(narrow, batch_format="pyarrow")


def readable_files(files: list[str], fs) -> list[str]:
    """Staged files a crash left whole; a torn file (killed mid-write) is deleted, its rows redone."""
    import pyarrow.parquet as pq

    ok = []
    for f in files:
        try:
            storage.retry_io(lambda f=f: pq.read_metadata(fs.open_input_file(f)), f"read footer {f}")
            ok.append(f)
        except Exception as exc:
            if storage.is_transient_io_error(exc):
                raise  # S3 still failing after retries: keep the file, fail the resume
            fs.delete_file(f)
    return ok


# -- the run's incremental plan ---------------------------------------------------------------------

def union(parts):
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def committed(layout: RunLayout, task: str, skus: list[str] | None = None):
    """The committed keys of ``task``'s content (of ``skus`` only, when given), read once (into
    the object store) for both the changed and the deleted check; None before the first commit."""
    cur = current_keys(layout.content(task), skus)
    return None if cur is None else cur.materialize()


def changed(part, layout: RunLayout, task: str, current, skus: list[str] | None = None):
    """``part`` (one task's items) without those committed (``current``), or rejected by the
    guardrails, with the same fingerprint: what an incremental run generates."""
    part = anti_join(part, current)
    # Rejected by the guardrails for these very inputs (same model, sampling and seed):
    # generating again gives the same text and the same rejection.
    return anti_join(part, guard_rejected_keys(layout.rejects(task), skus))


def narrow(work, layout: RunLayout, tasks, valid_skus=None, skus: list[str] | None = None):
    """The items of ``work`` an incremental run generates: per task, those not committed with
    the same fingerprint. With ``valid_skus`` (not for a changes feed: it is partial, so absence
    is not deletion) the committed keys whose sku left the catalog are staged for the commit.
    With ``skus`` (a changes feed's: ``work`` holds no others) only their committed and rejected
    keys are read."""
    from ray.data.expressions import col

    parts = []
    for t in tasks:
        current = committed(layout, t, skus)
        # An Arrow expression (one compute call per block), not a Python predicate per item.
        parts.append(changed(work.filter(expr=col("task") == t), layout, t, current, skus))
        if valid_skus is not None:
            stage_deleted(layout, t, current, valid_skus)
    return union(parts)


def stage_deleted(layout: RunLayout, task: str, current, valid_skus) -> None:
    gone = deleted_keys(current, valid_skus)
    if gone is None:
        return
    out = layout.deleted(task)
    storage.delete_tree(out)
    gone.write_parquet(out.path, filesystem=out.fs)
