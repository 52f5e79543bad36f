"""Validate and clean: every catalog row leaves as a clean row or as a reject with a reason.

Never raises on row content. Strings are NFC-normalised, NBSP and odd whitespace become spaces,
control, zero-width and bidi characters are removed, runs of whitespace collapse; values over their
cap are truncated (optional fields) or rejected (titles). Prices must be numeric, finite and
>= 0. Duplicate skus are found in a separate, one-column pass (``find_duplicate_skus``) and every
row of a duplicated sku is rejected: two rows disagreeing about one product is a catalog bug, and a
wrong price is worse than no text.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

import pyarrow as pa
import pyarrow.compute as pc

from pdgen_core.hygiene import clean_field
from pdgen_core.stages.contract import RowStage
from pdgen_core.stages.read import REQUIRED
from pdgen_core.text import norm_sku, norm_text

TEXT_FIELDS = ("title", "brand", "category", "color", "gender", "material", "attributes", "description")
CAPS = {"title": 300, "description": 4000, "attributes": 1000}
DEFAULT_CAP = 200
SKU_CAP = 128
# Fields that reach prompts get full input hygiene; the reference description (fine-tuning only)
# is just normalised.
HYGIENE_FIELDS = frozenset(TEXT_FIELDS) - {"description"}

CLEAN_SCHEMA = pa.schema(
    [("sku", pa.string())]
    + [(f, pa.string()) for f in TEXT_FIELDS]
    + [("price", pa.float64()), ("input_flags", pa.string()), ("reject_reason", pa.string()),
       ("reject_detail", pa.string())]
)


def parse_price(value: Any) -> tuple[float | None, str | None]:
    """(price, None) or (None, reason). Missing prices are allowed: templates omit them."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return None, "invalid_price"
    if isinstance(value, str):
        s = value.strip().replace(",", "")
        if not s:
            return None, None
        try:
            value = float(s)
        except ValueError:
            return None, "invalid_price"
    try:
        p = float(value)
    except (TypeError, ValueError):
        return None, "invalid_price"
    if not math.isfinite(p):
        return None, "nonfinite_price"
    if p < 0:
        return None, "negative_price"
    if p > 1e9:
        return None, "price_too_large"
    return p, None


def clean_row(row: dict[str, Any], dup_skus: frozenset[str] = frozenset()) -> dict[str, Any]:
    """One output row of ``CLEAN_SCHEMA``; ``reject_reason`` holds the reason when it is rejected."""
    out: dict[str, Any] = {"reject_reason": None, "reject_detail": None}
    sku = norm_sku(row.get("sku"))
    out["sku"] = sku
    flags: set[str] = set()
    brand = norm_text(row.get("brand"))
    for f in TEXT_FIELDS:
        v = norm_text(row.get(f))
        cap = CAPS.get(f, DEFAULT_CAP)
        if v is not None and f in HYGIENE_FIELDS and not (f == "title" and len(v) > cap):
            # HTML, mojibake, instruction-like text and PII are neutralised and flagged, not fatal
            v, fl = clean_field(v, cap, keep=(brand,) if brand else ())
            flags.update(fl)
            v = v or None
        elif v is not None and len(v) > cap and f != "title":
            v = v[: cap - 1].rstrip() + "…"
        out[f] = v
    out["input_flags"] = ",".join(sorted(flags)) or None
    price, price_reason = parse_price(row.get("price"))
    out["price"] = price
    reason, detail = _first_problem(out, sku, price_reason, row.get("price"), dup_skus)
    if reason:
        out["reject_reason"], out["reject_detail"] = reason, detail
        if out["title"] and len(out["title"]) > CAPS["title"]:
            out["title"] = out["title"][: CAPS["title"]]  # keep rejects small
        if sku and len(sku) > SKU_CAP:
            out["sku"] = sku[:SKU_CAP]
    return out


def _first_problem(out, sku, price_reason, raw_price, dup_skus) -> tuple[str | None, str | None]:
    if sku is None:
        return "missing_sku", "sku is empty or null"
    if len(sku) > SKU_CAP:
        return "invalid_sku", f"sku longer than {SKU_CAP} characters"
    if out["title"] is None:
        return "missing_title", "title is empty or null after whitespace normalisation"
    if len(out["title"]) > CAPS["title"]:
        return "title_too_long", f"title has {len(out['title'])} characters (cap {CAPS['title']})"
    if price_reason:
        return price_reason, f"price {str(raw_price)[:40]!r} is not a finite number >= 0"
    if sku in dup_skus:
        return "duplicate_sku", f"sku {sku[:60]!r} appears more than once in the catalog"
    return None, None


def clean_batch(batch: pa.Table, dup_skus: frozenset[str] = frozenset()) -> pa.Table:
    """Ray Data UDF body: a pyarrow batch of canonical columns -> ``CLEAN_SCHEMA``.

    Rows that cleaning leaves as they are (``fast_rows``: every field plain ASCII, a plain price)
    are passed through with Arrow compute; only the others go through ``clean_row`` in Python.
    The output is the same row for row (``clean_batch_slow``; a property test compares them)."""
    batch = _decodable(batch)
    fast = fast_rows(batch, dup_skus)
    n_fast = pc.sum(fast).as_py() or 0
    if n_fast == 0:
        return clean_batch_slow(batch, dup_skus)
    quick = _passed_through(batch.filter(fast))
    if n_fast == batch.num_rows:
        return quick
    slow = clean_batch_slow(batch.filter(pc.invert(fast)), dup_skus)
    # Back in the input's order: the fast rows' positions, then the slow ones', sorted.
    positions = pa.array(range(batch.num_rows), pa.int64())
    order = pa.chunked_array([positions.filter(fast), positions.filter(pc.invert(fast))])
    return pa.concat_tables([quick, slow]).take(pc.sort_indices(order))


def clean_batch_slow(batch: pa.Table, dup_skus: frozenset[str] = frozenset()) -> pa.Table:
    """``clean_row`` on every row (the Python path)."""
    rows = _decodable(batch).to_pylist()
    out = [clean_row(r, dup_skus) for r in rows]
    return pa.Table.from_pylist(out, schema=CLEAN_SCHEMA)


def fast_rows(batch: pa.Table, dup_skus: frozenset[str] = frozenset()):
    """Rows ``clean_row`` would return unchanged and valid, found with Arrow compute: the sku a
    normal ASCII string of at most ``SKU_CAP`` (or an integer), not a duplicate; the title
    present; each text field null or plain (``hygiene.plain_mask`` for prompt fields, only
    ``text.normal_mask`` for the description) within its cap; the price null or a finite number
    in [0, 1e9]. A column of another type (bytes, lists, a text price) sends every row to Python."""
    from pdgen_core.hygiene import plain_mask
    from pdgen_core.text import normal_mask

    n = batch.num_rows
    names = set(batch.column_names)
    if "sku" not in names or "title" not in names:
        return pa.repeat(pa.scalar(False), n)
    sku = batch.column("sku")
    if pa.types.is_integer(sku.type):
        ok = pc.is_valid(sku)
        sku_text = pc.cast(sku, pa.string())
    else:
        ok = normal_mask(sku, SKU_CAP)
        sku_text = sku
    if dup_skus and pc.any(ok).as_py():
        ok = pc.and_(ok, pc.invert(pc.fill_null(pc.is_in(sku_text, pa.array(sorted(s for s in dup_skus if s is not None), pa.string())), False)))
    ok = pc.and_(ok, pc.is_valid(batch.column("title")))
    for f in TEXT_FIELDS:
        if f not in names or not pc.any(ok).as_py():
            continue
        col = batch.column(f)
        if not (pa.types.is_null(col.type) or pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            return pa.repeat(pa.scalar(False), n)  # bytes, lists, structs: clean_row's conversions
        if col.null_count == len(col):
            continue  # all null: None for every row, as clean_row gives
        cap = CAPS.get(f, DEFAULT_CAP)
        good = plain_mask(col, cap) if f in HYGIENE_FIELDS else normal_mask(col, cap)
        ok = pc.and_(ok, pc.or_(pc.is_null(col), good))
    if "price" in names:
        price = batch.column("price")
        if not (pa.types.is_floating(price.type) or pa.types.is_integer(price.type)):
            return pa.repeat(pa.scalar(False), n)
        p = pc.cast(price, pa.float64())
        good = pc.and_(pc.and_(pc.is_finite(p), pc.greater_equal(p, 0.0)), pc.less_equal(p, 1e9))
        ok = pc.and_(ok, pc.or_(pc.is_null(p), pc.fill_null(good, False)))
    return pc.fill_null(ok, False)


def _passed_through(batch: pa.Table) -> pa.Table:
    """``CLEAN_SCHEMA`` for rows ``fast_rows`` chose: their values as they are, no flags."""
    n = batch.num_rows
    names = set(batch.column_names)
    cols = {}
    for f in CLEAN_SCHEMA:
        if f.name in names and f.name not in ("input_flags", "reject_reason", "reject_detail"):
            c = batch.column(f.name)
            cols[f.name] = c if c.type == f.type else pc.cast(c, f.type)
        else:
            cols[f.name] = pa.nulls(n, f.type)
    return pa.table(cols, schema=CLEAN_SCHEMA)


def _decodable(batch: pa.Table) -> pa.Table:
    """String columns that hold invalid UTF-8 (Parquet writers need not check it) become binary,
    which ``norm_text`` decodes with replacement characters; ``to_pylist`` raises on them."""
    for i, f in enumerate(batch.schema):
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            try:
                batch.column(i).validate(full=True)
            except pa.ArrowInvalid:
                to = pa.binary() if pa.types.is_string(f.type) else pa.large_binary()
                batch = batch.set_column(i, f.name, batch.column(i).cast(to))
    return batch


def find_duplicate_skus(ds) -> frozenset[str]:
    """Skus of valid rows that occur more than once, in one pass of 64-bit hashes and no shuffle:
    each block hashes its skus (8 bytes a row), one task sorts them all and finds the hashes that
    repeat, and only when there are any are the skus behind them collected and counted exactly
    (a hash collision makes a candidate, never a duplicate). Ray's hash-shuffle groupby, which
    this replaces above a million rows, was the largest worker of the 5M-row plan (794 MB private
    in ``HashAggregateMap``); this holds 40 MB of hashes in one task at 5M."""
    import ray

    skus = ds.select_columns(["sku"])
    hashes = skus.map_batches(_sku_hashes, batch_format="pyarrow", batch_size=None).materialize()
    refs = hashes.to_arrow_refs()
    if not refs:
        return frozenset()
    repeated = ray.get(ray.remote(_repeated_hashes).remote(*refs))
    if not len(repeated):
        return frozenset()
    found = skus.map_batches(_skus_with_hash, fn_kwargs={"hashes": repeated}, batch_format="pyarrow",
                             batch_size=None)
    counts = Counter(s for b in found.iter_batches(batch_format="pyarrow") for s in b.column("sku").to_pylist())
    return frozenset(s for s, n in counts.items() if n > 1)


def _hash_skus(col) -> np.ndarray:
    import pandas as pd

    values = pc.drop_null(col).to_numpy(zero_copy_only=False)
    return pd.util.hash_array(values.astype(object), categorize=False) if len(values) else np.empty(0, np.uint64)


def _sku_hashes(t: pa.Table) -> pa.Table:
    return pa.table({"h": pa.array(_hash_skus(t.column("sku")), pa.uint64())})


def _repeated_hashes(*tables: pa.Table) -> np.ndarray:
    parts = [t.column("h").to_numpy() for t in tables if t.num_rows]
    if not parts:
        return np.empty(0, np.uint64)
    h = np.sort(np.concatenate(parts))
    return np.unique(h[1:][h[1:] == h[:-1]])


def _skus_with_hash(t: pa.Table, hashes: np.ndarray) -> pa.Table:
    col = pc.drop_null(t.column("sku"))
    keep = np.isin(_hash_skus(col), hashes)
    return pa.table({"sku": col.filter(pa.array(keep)).cast(pa.string())})


def mark_duplicates(batch: pa.Table, dup_skus: frozenset[str]) -> pa.Table:
    rows = batch.to_pylist()
    for r in rows:
        if r["reject_reason"] is None and r["sku"] in dup_skus:
            r["reject_reason"] = "duplicate_sku"
            r["reject_detail"] = f"sku {r['sku'][:60]!r} appears more than once in the catalog"
    return pa.Table.from_pylist(rows, schema=CLEAN_SCHEMA)


def known_brands(clean) -> frozenset[str]:
    """Every brand of the cleaned catalog (for the guard's ``other_brand``): distinct brands per
    block, merged on the driver (few), so no shuffle."""
    per_block = clean.map_batches(_distinct_brands, batch_format="pyarrow", batch_size=None)
    return frozenset(b for batch in per_block.iter_batches(batch_format="pyarrow")
                     for b in batch.column("brand").to_pylist() if b)


def _distinct_brands(batch: pa.Table) -> pa.Table:
    return pa.table({"brand": pc.unique(batch.column("brand").combine_chunks()).cast(pa.string())})


# The stage contract (``stages.contract``): cleaning and the duplicate marking keep every row.
CLEAN = RowStage("validate", clean_batch, needs=frozenset(REQUIRED), makes=CLEAN_SCHEMA, one_to_one=True)
MARK_DUPLICATES = RowStage("validate", mark_duplicates, needs=frozenset({"sku", "reject_reason", "reject_detail"}),
                           makes=CLEAN_SCHEMA, one_to_one=True)
