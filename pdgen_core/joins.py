"""Joins against a small side: broadcast when it is small, Ray Data's hash join when it is not.

An incremental refresh anti-joins the plan with the committed keys, the guard-rejected keys and
the skus still in the catalog; a review task joins grouped reviews onto its products. Ray Data's
hash join starts shuffle actors and moves both sides through them, which costs seconds per join
even for a hundred rows (an incremental run of three tasks did about ten of them).

When the small side has at most ``PDGEN_BROADCAST_JOIN_ROWS`` rows (default 1,000,000), it is
materialised into Ray's object store once and every block of the big side is joined in a map task
against it (the broadcast join Spark picks below ``autoBroadcastJoinThreshold``). The driver holds
only object references, never rows. Above the limit the hash join runs, as before.

Key semantics match the hash join: a null key never matches, so an anti-join keeps its row.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc

_SEP = "\x1f"  # unit separator: does not occur in cleaned keys (validation strips control chars)
_CACHE: OrderedDict[tuple, Any] = OrderedDict()  # per worker process: a few broadcast sides
_CACHE_SIZE = 4


def broadcast_limit() -> int:
    from pdgen_core.settings import get_settings

    return get_settings().broadcast_join_rows


# Rows of the right side per hash-join partition. Each partition is joined in one aggregator, so
# a fixed count (2 per CPU) lets every aggregator's share grow with the catalog: at 5M committed
# keys and 4 partitions the largest worker held 2.0 GB private (make bench, plan section).
HASH_PARTITION_ROWS = 500_000


def hash_partitions(rows: int, base: int) -> int:
    """Partitions for a hash join whose right side has ``rows`` rows: at least ``base`` (the
    cluster's shuffle parallelism), more as the side grows, so each stays near
    ``HASH_PARTITION_ROWS``."""
    return max(base, -(-rows // HASH_PARTITION_ROWS))


def _partitions(rows: int = 0) -> int:
    from pdgen_core.pipeline import shuffle_partitions

    return hash_partitions(rows, shuffle_partitions())


def key_strings(t: pa.Table, on: Sequence[str]) -> pa.ChunkedArray | pa.Array:
    """One string per row for the key columns ``on``; null when any part is null."""
    cols = [pc.cast(t.column(c), pa.string()) for c in on]
    if len(cols) == 1:
        return cols[0]
    return pc.binary_join_element_wise(*cols, _SEP)


def small_side(ds, limit: int | None = None):
    """Materialise ``ds`` (into the object store; the driver holds references). Returns the
    materialised dataset and, when it has at most ``limit`` rows, its block references (the
    broadcast side), else None."""
    limit = broadcast_limit() if limit is None else limit
    mat = ds.materialize()
    return mat, (mat.to_arrow_refs() if mat.count() <= limit else None)


def _cached(kind: str, refs: list, build):
    import ray

    key = (kind, *(r.hex() for r in refs))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    tables = [t for t in ray.get(list(refs)) if t.num_rows]
    value = build(tables)
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _value_set(refs: list, on: tuple[str, ...]) -> pa.Array:
    def build(tables):
        if not tables:
            return pa.array([], pa.string())
        keys = pa.chunked_array([key_strings(t, on) for t in tables], pa.string())
        return pc.unique(pc.drop_null(keys))

    return _cached(("set", on), refs, build)


def _drop_matching(batch: pa.Table, refs: list, on: tuple[str, ...]) -> pa.Table:
    values = _value_set(refs, on)
    if not len(values) or not batch.num_rows:
        return batch
    hit = pc.fill_null(pc.is_in(key_strings(batch, on), value_set=values), False)
    return batch.filter(pc.invert(hit))


def anti_join(ds, keys, on: Sequence[str]):
    """Rows of ``ds`` whose ``on`` key is not among ``keys`` (a Dataset, or None for none)."""
    if keys is None:
        return ds
    on = tuple(on)
    keys, refs = small_side(keys.select_columns(list(on)))
    if refs is None:
        return ds.join(keys, join_type="left_anti", num_partitions=_partitions(keys.count()), on=on)
    if keys.count() == 0:
        return ds
    return ds.map_batches(_drop_matching, fn_kwargs={"refs": refs, "on": on},
                          batch_format="pyarrow", batch_size=None, zero_copy_batch=True)


def _lookup(batch: pa.Table, refs: list, on: str, schema: pa.Schema) -> pa.Table:
    def build(tables):
        t = pa.concat_tables(tables) if tables else schema.empty_table()
        return t, {k: i for i, k in enumerate(t.column(on).to_pylist())}

    right, index = _cached(("lookup", on), refs, build)
    rows = [index.get(k) for k in batch.column(on).to_pylist()]
    picked = right.take(pa.array(rows, pa.int64()))  # a null index gives a null row
    for name in right.column_names:
        if name != on:
            batch = batch.append_column(right.schema.field(name), picked.column(name))
    return batch


def left_join_unique(ds, right, on: str, schema: pa.Schema):
    """``ds`` with ``right``'s columns (``schema``) added by ``on``, which is unique in ``right``;
    rows without a match get nulls (a left outer join that keeps ``ds``'s row order)."""
    right, refs = small_side(right)
    if refs is None:
        return ds.join(right, join_type="left_outer", num_partitions=_partitions(right.count()), on=(on,))
    return ds.map_batches(_lookup, fn_kwargs={"refs": refs, "on": on, "schema": schema},
                          batch_format="pyarrow", batch_size=None)
