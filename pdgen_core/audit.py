"""``pdgen audit``: a sample of a committed run's accepted texts, with the facts each was written
from, for a person to read and judge (issue 17: the publishable rate is measured by reading).

    pdgen audit RUN_ID --output s3://content/demo/ --per-task 50 --out audit.csv

It reads the run record ``<output>/runs/<run_id>.json``, and per task the content table at the
version that run committed, keeping the rows that run wrote; it samples ``--per-task`` of them
(seeded, so a rerun gives the same sample) and looks up their facts in the run's catalog (the
record's ``spec.catalog``: its URI and column mapping), reading only the task's fields. A catalog
that cannot be read any more still gives an audit: the facts are then empty and ``facts_note``
says why. ``--out`` ending in ``.csv`` writes CSV (facts as one JSON cell, ``publishable`` and
``why`` columns left blank for the reader); anything else writes JSON lines.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from pdgen_core import storage
from pdgen_core.errors import InputError
from pdgen_core.stages import commit
from pdgen_core.stages.read import catalog_files
from pdgen_core.tasks import TASKS

COLUMNS = ("task", "sku", "locale", "variant", "text", "facts", "facts_note", "model", "adapter",
           "attempts", "finish_reason", "run_id", "publishable", "why")


class AuditError(InputError):
    """No such run, or nothing to audit; the message says what was looked for."""


def _accepted(output_uri: str, task: str, version: int | None, run_id: str,
              staged: bool = False) -> list[dict[str, Any]]:
    """The run's rows in ``content/<task>`` at ``version``, or, for a run not yet promoted
    (``staged``), in its own staged table: a held run is read before it is published."""
    import pyarrow.compute as pc

    root = storage.resolve(output_uri)
    loc = commit.staged_table(root, run_id, task) if staged else root.child("content", task)
    dt = commit.open_table(loc, None if staged else version)
    if dt is None:
        return []
    rows = []
    for batch in dt.to_pyarrow_dataset(filesystem=storage.table_filesystem(loc)).to_batches():
        # Filtered after the cast: Delta merge files hold string_view columns (see report._rows).
        batch = storage.plain_types(batch)
        rows += batch.filter(pc.equal(batch.column("run_id"), run_id)).to_pylist()
    return rows


def _facts(spec: dict, task: str, skus: set[str]) -> tuple[dict[str, dict], str]:
    """sku -> the task's fields from the run's catalog, and a note when they cannot be read."""
    import pyarrow.dataset as pads

    cat = spec.get("catalog") or {}
    if not cat.get("uri"):
        return {}, "the run record names no catalog"
    mapping = {**{f: f for f in ("sku", *TASKS[task].fields)}, **(cat.get("columns") or {})}
    try:
        loc, files = catalog_files(cat["uri"])
        ds = pads.dataset(files, filesystem=loc.fs, format="parquet")
        wanted = {c: mapping[c] for c in ("sku", *TASKS[task].fields) if mapping.get(c) in ds.schema.names}
        if "sku" not in wanted:
            return {}, f"catalog {cat['uri']} has no sku column {mapping['sku']!r}"
        out: dict[str, dict] = {}
        for batch in ds.to_batches(columns=sorted(set(wanted.values()))):
            for row in storage.plain_types(batch).to_pylist():
                sku = str(row[wanted["sku"]])
                if sku in skus:
                    out[sku] = {c: row[src] for c, src in wanted.items() if c != "sku" and row[src] is not None}
        note = "" if task != "review_digest" else "reviews are not exported; read them in the reviews table"
        return out, note
    except Exception as exc:  # a moved or deleted catalog: the texts are still worth reading
        return {}, f"catalog {cat['uri']} not readable: {exc}"[:300]


def sample(output_uri: str, run_id: str, per_task: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``per_task`` accepted texts of each task of the run, with their facts."""

    loc = storage.resolve(output_uri).child("runs", f"{run_id}.json")
    if not storage.exists(loc):
        raise AuditError(f"no run record {loc.uri}; check the run id and --output")
    record = storage.read_json(loc)
    spec = record.get("spec") or {}
    tables = record.get("tables") or {}
    tasks = list(((record.get("counts") or {}).get("by_task") or {}).keys()) or list(spec.get("tasks") or [])
    out = []
    for task in tasks:
        rows = sorted(_accepted(output_uri, task, tables.get(f"content/{task}"), run_id,
                                staged=f"staged/{run_id}/{task}" in tables),
                      key=lambda r: (str(r["sku"]), r["locale"], r.get("variant") or ""))
        picked = random.Random(f"{seed}/{task}").sample(rows, min(per_task, len(rows)))
        facts, note = _facts(spec, task, {str(r["sku"]) for r in picked})
        for r in picked:
            sku = str(r["sku"])
            out.append({
                "task": task, "sku": sku, "locale": r["locale"], "variant": r.get("variant") or "",
                "text": r["text"], "facts": facts.get(sku, {}),
                "facts_note": note or ("" if sku in facts else "row not found in the catalog"),
                "model": r.get("model"), "adapter": r.get("adapter") or "", "attempts": r.get("attempts"),
                "finish_reason": r.get("finish_reason"), "run_id": run_id, "publishable": "", "why": ""})
    return out


def write(rows: list[dict[str, Any]], path: Path) -> Path:
    """CSV when ``path`` ends in .csv, else JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({**r, "facts": json.dumps(r["facts"], ensure_ascii=False, default=str)})
    else:
        with path.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    return path
