"""``pdgen migrate OUTPUT``: move runs staged under the old layout into staging tables.

Before the publish gate lived in the table (commit 957c1f9), a run that was not published
(``output.publish: staged``) committed its rows to ``content/<task>`` like any other run, and only
``published/<task>.json`` stayed behind. A Delta reader of such an output reads the latest version,
which holds the staged rows; and since every run now moves the pointer to the latest version, the
next run would publish them silently.

An old-layout staged version is one after the published pointer whose run's record has no
``publish`` section (records written before the gate) and names that version as its
``content/<task>``. For each, ``migrate``:

1. writes the rows that run changed into its staging table, ``staged/<run_id>/<task>``: the rows it
   upserted (content rows of that version carrying its run id) and the keys it deleted (in the
   version before, not in its own), as ``_op`` upserts and deletes, the shape a staged run writes;
2. rewrites the run's record: the staged table in place of the content version, and a
   ``publish`` section that says it is held as staged and where it came from;
3. restores ``content/<task>`` to the published version (a Delta ``restore``, as ``rollback``), so
   the latest version is the published content again; where nothing was ever published (old pdgen
   wrote no pointer for a staged run), the next version is empty instead.

Every step can be repeated: the staging write is the run's own Delta transaction, the record is
rewritten to the same content, and a restore already made is seen. ``pdgen promote RUN`` then
publishes a migrated run as any staged run. Runs refuse to start while an output holds an
old-layout staged version (``preflight``), naming this command.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pdgen_core import run_record, storage, versions
from pdgen_core.errors import InputError
from pdgen_core.log import get_logger
from pdgen_core.stages import commit


class LegacyLayout(InputError):
    """An output holds runs staged under the old layout: ``pdgen migrate`` first."""


def tasks_of(output_uri: str) -> list[str]:
    """The tasks with a content table under ``output_uri``."""
    return run_record._subfolders(storage.resolve(output_uri).child("content"))


def _migrated_from(rec: dict, task: str) -> int | None:
    return ((rec.get("publish") or {}).get("migrated") or {}).get(task)


def _is_old_staged(rec: dict | None, task: str, version: int) -> bool:
    """``version`` of ``content/<task>`` was committed by this old-layout staged run (or by one
    this command has rewritten the record of, but not yet restored the table after)."""
    if rec is None:
        return False
    if _migrated_from(rec, task) == version:
        return True
    return "publish" not in rec and (rec.get("tables") or {}).get(f"content/{task}") == version


def old_staged(output_uri: str, task: str) -> dict[str, Any] | None:
    """``content/<task>``'s versions after the published pointer that old-layout staged runs
    committed: {"published": p, "latest": L, "staged": [(version, run_id), ...], "other": [...]};
    None when there are none. ``other`` lists the tail's versions that are not such runs' (a
    restore to ``p`` made by an earlier migrate is neither)."""
    table = commit.open_table(versions._content(output_uri, task))
    ptr, _ = versions.read_pointer(output_uri, task)
    # No pointer: nothing was ever published (old pdgen wrote none for staged runs): p = -1.
    p = -1 if ptr is None else int(ptr["version"])
    if table is None or p >= table.version():
        return None
    latest = table.version()
    staged, other, restored = [], [], False
    for v in range(p + 1, latest + 1):
        info = versions.commit_info(output_uri, task, v)
        rid = info.get("pdgen.run_id")
        if rid and _is_old_staged(run_record.read_record(output_uri, rid), task, v):
            staged.append((v, rid))
        elif v == latest and (info.get("pdgen.rollback_to") == str(p) or info.get(EMPTIED) == "true"):
            restored = True  # an earlier migrate's restore, its pointer not yet moved
        else:
            other.append(v)
    if not staged:
        return None
    return {"published": p, "latest": latest, "staged": staged, "other": other, "restored": restored}


def promote(output_uri: str, run_id: str, **kw) -> dict[str, int]:
    """``versions.promote`` on an output without old-layout staged versions: promoting into such
    a table would publish them too. Every promote goes through here (CLI and review)."""
    check_output(output_uri, tasks_of(output_uri))
    return versions.promote(output_uri, run_id, **kw)


def check_output(output_uri: str, tasks: list[str]) -> None:
    """Refuse to run against an output with old-layout staged versions (the run would publish
    them): the message names ``pdgen migrate``."""
    found = {t: s for t in tasks if (s := old_staged(output_uri, t))}
    if not found:
        return
    what = "; ".join(f"content/{t} v{', v'.join(str(v) for v, _ in s['staged'])} "
                     f"(run {', '.join(sorted({r for _, r in s['staged']}))}) "
                     + (f"after the published v{s['published']}" if s["published"] >= 0 else "with nothing published")
                     for t, s in sorted(found.items()))
    raise LegacyLayout(
        f"{output_uri} holds runs staged under the old layout, in the content tables where every "
        f"reader sees them: {what}. A run now would publish them. Move them into staging tables with "
        f"`pdgen migrate {output_uri}` (then `pdgen promote RUN_ID --output {output_uri}` publishes "
        "one), and run again.")


def _keys(table: pa.Table) -> pa.Table:
    return table.select(list(commit.KEY))


def _as_content(t: pa.Table) -> pa.Table:
    """``t`` in ``commit.CONTENT_SCHEMA``: its columns cast, the ones it lacks null."""
    return pa.table({f.name: (t.column(f.name).cast(f.type) if f.name in t.column_names
                              else pa.nulls(t.num_rows, f.type)) for f in commit.CONTENT_SCHEMA})


def _version_rows(output_uri: str, task: str, version: int) -> pa.Table:
    loc = versions._content(output_uri, task)
    t = commit.open_table(loc, version).to_pyarrow_table(filesystem=storage.table_filesystem(loc))
    return storage.plain_types(t)


def changes_of(output_uri: str, task: str, version: int, run_id: str) -> pa.Table:
    """What ``run_id``'s commit at ``version`` changed, as ``commit.MERGE_SCHEMA`` rows: its
    upserts (rows of that version with its run id) and its deletes (keys of the version before
    that it does not have)."""
    now = _version_rows(output_uri, task, version)
    before = _version_rows(output_uri, task, version - 1) if version > 0 else now.schema.empty_table()
    mine = now.filter(pc.equal(now.column("run_id"), run_id))
    gone = _keys(before).join(_keys(now), keys=list(commit.KEY), join_type="left anti") \
        if before.num_rows else _keys(before)
    parts = [_as_content(t).append_column("_op", pa.array([op] * t.num_rows, pa.string()))
             for t, op in ((mine, "upsert"), (gone, "delete"))]
    return pa.concat_tables(parts).cast(commit.MERGE_SCHEMA)


def _stage(output_uri: str, task: str, version: int, run_id: str) -> int:
    loc = commit.staged_table(storage.resolve(output_uri), run_id, task)
    rows = changes_of(output_uri, task, version, run_id)
    def source() -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(commit.MERGE_SCHEMA, rows.to_batches())

    return storage.retry_io(partial(commit.stage_content, loc, source, run_id), f"stage {run_id}/{task}")


def _rewrite_record(output_uri: str, run_id: str, task: str, version: int, staged_version: int) -> None:
    rec = run_record.read_record(output_uri, run_id)
    tables = dict(rec.get("tables") or {})
    tables.pop(f"content/{task}", None)
    tables[f"staged/{run_id}/{task}"] = staged_version
    gate = rec.get("publish") or {"requested": "staged", "published": False, "held_by": "staged"}
    gate = {**gate, "migrated": {**(gate.get("migrated") or {}), task: version},
            "migrated_at": gate.get("migrated_at") or dt.datetime.now(dt.timezone.utc).isoformat()}
    storage.write_json(run_record.record_loc(output_uri, run_id), {**rec, "tables": tables, "publish": gate})


EMPTIED = "pdgen.migrate_emptied"


def _empty(output_uri: str, task: str) -> int:
    """Nothing was published before the staged runs: the content table's next version is empty."""
    loc = versions._content(output_uri, task)
    commit.open_table(loc).delete(commit_properties=commit.CommitProperties(custom_metadata={EMPTIED: "true"}))
    versions.sync_pointer(output_uri, task)
    return commit.open_table(loc).version()


def migrate(output_uri: str, dry_run: bool = False) -> dict[str, dict[str, Any]]:
    """Migrate every task's old-layout staged versions (see the module doc); returns what was
    found per task, with ``restored_as`` (the content table's new version) unless ``dry_run``."""
    log = get_logger()
    out = {}
    for task in tasks_of(output_uri):
        found = old_staged(output_uri, task)
        if found is None:
            continue
        if found["other"]:
            raise LegacyLayout(
                f"content/{task}: versions {found['other']} after the published v{found['published']} are "
                f"not old-layout staged runs, so restoring v{found['published']} would drop them too. "
                f"Publish what you want first (`pdgen rollback {output_uri} --task {task} --to VERSION`), "
                "then migrate.")
        out[task] = {"published": found["published"], "latest": found["latest"],
                     "runs": [{"version": v, "run_id": r} for v, r in found["staged"]]}
        if dry_run:
            continue
        for v, rid in found["staged"]:
            staged_v = _stage(output_uri, task, v, rid)
            _rewrite_record(output_uri, rid, task, v, staged_v)
        if found["restored"]:
            versions.sync_pointer(output_uri, task)
            new = found["latest"]
        elif found["published"] < 0:
            new = _empty(output_uri, task)
        else:
            new = versions.rollback(output_uri, task, found["published"])
        out[task]["restored_as"] = new
        log.info("layout.migrated", output=output_uri, task=task, runs=[r for _, r in found["staged"]],
                 published=found["published"], version=new)
    return out
