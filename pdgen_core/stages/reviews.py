"""Reviews: the spec's reviews dataset, cleaned and grouped per sku for ``review_digest``.

Review texts get input hygiene (HTML stripped, mojibake repaired, instructions neutralised, PII
replaced by placeholders) before they can reach a prompt. Grouping runs in Ray Data; the result is
one row per sku: ``reviews_json`` (up to ``KEEP`` reviews, most useful first), ``review_count``
and ``avg_rating``, joined onto the catalog rows.
"""

from __future__ import annotations

import json

import pyarrow as pa

from pdgen_core import joins, storage
from pdgen_core.hygiene import clean_field
from pdgen_core.spec import JobSpec, ReviewsSpec
from pdgen_core.stages import read
from pdgen_core.tasks import TASKS
from pdgen_core.text import norm_sku

KEEP = 20
TEXT_CAP = 600
GROUPED = pa.schema([("sku", pa.string()), ("reviews_json", pa.string()),
                     ("review_count", pa.int64()), ("avg_rating", pa.float64())])
CLEANED = pa.schema([("sku", pa.string()), ("text", pa.string()), ("rating", pa.float64())])


def column_plan(rv: ReviewsSpec) -> dict[str, str]:
    names = set(read.source_schema(rv.uri).names)
    plan = {}
    for canon in ("sku", "text", "rating"):
        src = rv.columns.get(canon, canon)
        if src in names:
            plan[canon] = src
        elif canon != "rating":
            raise read.CatalogError(
                f"reviews {rv.uri!r} has no column {src!r} for {canon!r}; available: {sorted(names)}; "
                f"fix reviews.columns.{canon}")
    return plan


def clean_reviews(batch: pa.Table) -> pa.Table:
    out = []
    for r in batch.to_pylist():
        sku = norm_sku(r.get("sku"))
        text, _ = clean_field(r.get("text"), TEXT_CAP)
        if not sku or not text:
            continue
        rating = r.get("rating")
        try:
            rating = float(rating) if rating is not None else None
        except (TypeError, ValueError):
            rating = None
        out.append({"sku": sku, "text": text, "rating": rating})
    return pa.Table.from_pylist(out, schema=CLEANED)


def group_reviews(group: pa.Table) -> pa.Table:
    rows = group.to_pylist()
    ratings = [r["rating"] for r in rows if r["rating"] is not None]
    # Longer reviews say more; ties broken by text so the selection is deterministic.
    keep = sorted(rows, key=lambda r: (-len(r["text"]), r["text"]))[:KEEP]
    return pa.Table.from_pylist([{
        "sku": rows[0]["sku"],
        "reviews_json": json.dumps([{"text": r["text"], "rating": r["rating"]} for r in keep],
                                   ensure_ascii=False),
        "review_count": len(rows),
        "avg_rating": round(sum(ratings) / len(ratings), 2) if ratings else None,
    }], schema=GROUPED)


def grouped_reviews(rv: ReviewsSpec):
    """One row per sku with its reviews, as a Ray Dataset. Up to ``PDGEN_BROADCAST_JOIN_ROWS``
    cleaned reviews are grouped in one task; more go through Ray's hash shuffle."""
    return grouped_and_dropped(rv)[0]


def grouped_and_dropped(rv: ReviewsSpec):
    """``grouped_reviews``, and the number of reviews dropped by cleaning (no sku, or no text
    left after hygiene): the raw count from the Parquet footers against the cleaned one."""
    import ray

    plan = column_plan(rv)
    loc, files = read.catalog_files(rv.uri)
    ds = ray.data.read_parquet(files, filesystem=loc.fs, columns=sorted(set(plan.values())))
    ds = ds.map_batches(storage.plain_types, batch_format="pyarrow", zero_copy_batch=True)
    ds = ds.rename_columns({src: canon for canon, src in plan.items()})
    if "rating" not in plan:
        ds = ds.add_column("rating", lambda b: pa.nulls(len(b), pa.float64()), batch_format="pyarrow")
    cleaned, refs = joins.small_side(ds.map_batches(clean_reviews, batch_format="pyarrow"))
    dropped = read.count_rows(files, loc.fs) - cleaned.count()  # materialised: counts are metadata
    if refs is None:  # many reviews: Ray's hash shuffle groups them
        return cleaned.groupby("sku").map_groups(group_reviews, batch_format="pyarrow"), dropped
    # Few enough to group in one task (no shuffle actors): sorted by sku, one pass.
    return cleaned.repartition(1).map_batches(group_all, batch_format="pyarrow", batch_size=None), dropped


def group_all(t: pa.Table) -> pa.Table:
    """``group_reviews`` over every sku of ``t`` (all of a sku's reviews are in ``t``)."""
    if not t.num_rows:
        return GROUPED.empty_table()
    t = t.sort_by("sku")
    skus = t.column("sku").to_pylist()
    parts, start = [], 0
    for i in range(1, len(skus) + 1):
        if i == len(skus) or skus[i] != skus[start]:
            parts.append(group_reviews(t.slice(start, i - start)))
            start = i
    return pa.concat_tables(parts)


def with_reviews(valid, spec: JobSpec):
    """Join each product's grouped reviews when a task reads them (broadcast when small); also
    the number of reviews cleaning dropped (for the run record)."""
    if not any(TASKS[t].needs_reviews for t in spec.tasks):
        return valid, 0
    grouped, dropped = grouped_and_dropped(spec.reviews)
    return joins.left_join_unique(valid, grouped, "sku", GROUPED), dropped
