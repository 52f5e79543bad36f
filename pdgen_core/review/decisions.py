"""Review decisions, one Delta table per task: ``<output>/reviews/<task>/``.

Each decision is appended as one table version: the run and row it judges, ``approve``,
``reject`` (with a reason) or ``edit`` (with the new text), who decided and when, and the
fingerprint of the text that was shown. The latest decision per row wins; a decision on a text
that is no longer the row's (its fingerprint differs) is ignored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Literal

import pyarrow as pa
from deltalake import write_deltalake

from pdgen_core import storage
from pdgen_core.stages import commit

Decision = Literal["approve", "reject", "edit"]
DECISIONS = ("approve", "reject", "edit")
REVIEW_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("task", pa.string()), ("sku", pa.string()), ("locale", pa.string()),
    ("variant", pa.string()), ("decision", pa.string()), ("reason", pa.string()),
    # The reviewer's text for an edit (null otherwise).
    ("edited_text", pa.string()),
    # sha256 of the proposed text the reviewer saw: a decision binds to that text only.
    ("text_fingerprint", pa.string()), ("input_fingerprint", pa.string()),
    ("in_sample", pa.bool_()), ("reviewer", pa.string()), ("decided_at", pa.timestamp("us", tz="UTC")),
])


def text_fingerprint(text: str | None) -> str:
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()


def table_loc(output_uri: str, task: str) -> storage.Location:
    return storage.resolve(output_uri).child("reviews", task)


def record(output_uri: str, task: str, **row) -> dict:
    """Append one decision (the columns of ``REVIEW_SCHEMA``; ``decided_at`` defaults to now)."""
    return record_many(output_uri, task, [row])[0]


def record_many(output_uri: str, task: str, rows: list[dict]) -> list[dict]:
    """Append decisions as one table version."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = [{"task": task, "decided_at": now, **r} for r in rows]
    for r in rows:
        if r.get("decision") not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, not {r.get('decision')!r}")
    loc = table_loc(output_uri, task)
    table = pa.Table.from_pylist(rows, schema=REVIEW_SCHEMA)
    storage.retry_io(lambda: write_deltalake(loc.uri, table, mode="append",
                                             storage_options=storage.table_options(loc)),
                     f"record review in reviews/{task}")
    return rows


def latest(output_uri: str, task: str, run_id: str) -> dict[tuple, dict]:
    """The latest decision per (sku, locale, variant) of ``run_id``."""
    import pyarrow.compute as pc

    loc = table_loc(output_uri, task)
    dtable = commit.open_table(loc)
    if dtable is None:
        return {}
    t = storage.plain_types(dtable.to_pyarrow_table(filesystem=storage.table_filesystem(loc)))
    out: dict[tuple, dict] = {}
    for r in sorted(t.filter(pc.equal(t.column("run_id"), run_id)).to_pylist(), key=lambda r: r["decided_at"]):
        out[(r["sku"], r["locale"], r["variant"])] = r
    return out
