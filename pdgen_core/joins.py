"""Joins against a small side: broadcast when it is small, Ray Data's hash join when it is not.

An incremental refresh anti-joins the plan with the committed keys, the guard-rejected keys and
the skus still in the catalog; a review task joins grouped reviews onto its products. Ray Data's
hash join starts shuffle actors and moves both sides through them, which costs seconds per join
even for a hundred rows (an incremental run of three tasks did about ten of them).

When the small side has at most ``PDGEN_BROADCAST_JOIN_ROWS`` rows (default 1,000,000), it is
materialised into Ray's object store once and every block of the big side is joined in a map task
against it (the broadcast join Spark picks below ``autoBroadcastJoinThreshold``). The driver holds
only object references, never rows. Above the limit the hash join runs, as before.

Anti-joins (the refresh's: committed keys against the plan) compare 128-bit digests of the key
(BLAKE2b of its parts, 16 bytes whatever the key's length), not the key strings. Up to
``PDGEN_BROADCAST_KEYS`` keys (default 20M) one task sorts the digests into a single array in the
object store, and every worker searches it zero-copy: 16 bytes per committed key per node, shared,
instead of a hash set of key strings per worker (at 5M keys the largest worker held 1.7 GB).
Above that, Ray's hash join runs on the two digest columns. Two different keys share a digest
with probability about n^2 / 2^129: 10^-25 at ten million keys.

Key semantics match the hash join: a null key never matches, so an anti-join keeps its row.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pdgen_core.ray_session import shuffle_partitions
from pdgen_core.settings import get_settings

_SEP = "\x1f"  # unit separator: does not occur in cleaned keys (validation strips control chars)
_CACHE: OrderedDict[tuple, Any] = OrderedDict()  # per worker process: a few broadcast sides
_CACHE_SIZE = 4


def broadcast_limit() -> int:
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


def _cached(kind, refs: list, build, keep_empty: bool = False):
    import ray

    key = (kind, *(r.hex() for r in refs))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    tables = ray.get(list(refs))
    if not keep_empty:
        tables = [t for t in tables if t.num_rows]
    value = build(tables)
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


DIGEST_COLS = ("_kh", "_kl")  # a key's 128-bit digest as two uint64 columns
_ZERO = bytes(16)


def broadcast_keys() -> int:
    return get_settings().broadcast_keys


DIGEST_CHUNK = 8192  # rows turned into Python strings at a time, whatever the block's size


def key_digests(t: pa.Table, on: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's key digest as (high, low) uint64 arrays, and where the key is valid (no null
    part: a null key never matches, as in the hash join)."""
    blake = hashlib.blake2b
    bufs, valid = [], np.zeros(t.num_rows, bool)
    for start in range(0, t.num_rows, DIGEST_CHUNK):
        keys = key_strings(t.slice(start, DIGEST_CHUNK), on).to_pylist()
        valid[start:start + len(keys)] = [k is not None for k in keys]
        bufs.append(b"".join(_ZERO if k is None else blake(k.encode(), digest_size=16).digest() for k in keys))
    pairs = np.frombuffer(b"".join(bufs), "<u8").reshape(-1, 2) if t.num_rows else np.empty((0, 2), np.uint64)
    return pairs[:, 0], pairs[:, 1], valid


def _digest_table(batch: pa.Table, on: tuple[str, ...]) -> pa.Table:
    """The valid keys of ``batch`` as digest columns (the right side of an anti-join)."""
    hi, lo, valid = key_digests(batch, on)
    return pa.table({DIGEST_COLS[0]: hi[valid], DIGEST_COLS[1]: lo[valid]})


def _with_digests(batch: pa.Table, on: tuple[str, ...]) -> pa.Table:
    hi, lo, valid = key_digests(batch, on)
    for name, col in zip(DIGEST_COLS, (hi, lo)):
        batch = batch.append_column(name, pa.array(col, pa.uint64(), mask=~valid))
    return batch


def _sorted_digests(*tables: pa.Table) -> np.ndarray:
    """One (2, n) array of the digests sorted by (high, low): what every worker searches."""
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return np.empty((2, 0), np.uint64)
    hi = np.concatenate([t.column(DIGEST_COLS[0]).to_numpy() for t in parts])
    lo = np.concatenate([t.column(DIGEST_COLS[1]).to_numpy() for t in parts])
    order = np.lexsort((lo, hi))
    return np.stack([hi[order], lo[order]])


def contains(digests: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Whether each (hi, lo) is in ``digests`` (sorted by ``_sorted_digests``). Equal high words
    (about one pair in 2^64 / n) are walked until the low word matches or the run ends."""
    shi, slo = digests[0], digests[1]
    n, hit = len(shi), np.zeros(len(hi), bool)
    j = np.searchsorted(shi, hi)
    idx = np.nonzero(j < n)[0]
    idx = idx[shi[j[idx]] == hi[idx]]
    while len(idx):
        found = slo[j[idx]] == lo[idx]
        hit[idx[found]] = True
        idx = idx[~found]
        j[idx] += 1
        idx = idx[j[idx] < n]
        idx = idx[shi[j[idx]] == hi[idx]]
    return hit


def _drop_digest_matches(batch: pa.Table, ref, on: tuple[str, ...]) -> pa.Table:
    if not batch.num_rows:
        return batch
    digests = _cached(("digests",), [ref], lambda parts: parts[0], keep_empty=True)
    if not digests.shape[1]:
        return batch
    hi, lo, valid = key_digests(batch, on)
    return batch.filter(pa.array(~(contains(digests, hi, lo) & valid)))


def anti_join(ds, keys, on: Sequence[str]):
    """Rows of ``ds`` whose ``on`` key is not among ``keys`` (a Dataset, or None for none)."""
    import ray

    if keys is None:
        return ds
    on = tuple(on)
    # Whole blocks (batch_size=None; key_digests works through them 8,192 rows at a time): the
    # map fuses into the read task, so a Delta merge's string_view block is cast
    # (storage.plain_types) before it is serialized. With batch_size=8192 the read ran as a task
    # of its own and Ray failed to pickle its string_view output.
    digests = keys.select_columns(list(on)).map_batches(
        _digest_table, fn_kwargs={"on": on}, batch_format="pyarrow", batch_size=None).materialize()
    n = digests.count()
    if n == 0:
        return ds
    if n > broadcast_keys():
        joined = ds.map_batches(_with_digests, fn_kwargs={"on": on}, batch_format="pyarrow", batch_size=8192)
        return joined.join(digests, join_type="left_anti", num_partitions=_partitions(n),
                           on=DIGEST_COLS).drop_columns(list(DIGEST_COLS))
    # One task sorts every digest into one array in the object store; workers map it zero-copy.
    ref = ray.remote(_sorted_digests).options(num_cpus=0).remote(*digests.to_arrow_refs())
    return ds.map_batches(_drop_digest_matches, fn_kwargs={"ref": ref, "on": on},
                          batch_format="pyarrow", batch_size=8192)


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
