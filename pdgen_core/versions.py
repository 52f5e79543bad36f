"""Versions of the content tables: list, show, diff, rollback, and the publish gate.

The gate is the table itself: the latest version of ``content/<task>`` is always the published
content, so any Delta reader (Polars, DuckDB, Spark, delta-rs) that reads the latest version reads
what is published. Only published runs commit there; a run that is not published (``output.publish:
staged``, or below ``guardrails.min_accept_rate``) keeps its rows in ``staged/<run_id>/<task>/``
(``stages.commit``) until ``promote`` merges them in as one version. ``rollback`` is a Delta
``restore``: a new version with an older version's rows, so it stays the latest too.

``<output>/published/<task>.json`` = {"version", "run_id", ...} records the published version and
the run behind it, written with an S3 conditional put (``IfMatch`` the etag read, or
``IfNoneMatch: *`` for the first), so two promoters never overwrite each other silently. It follows
the table; nothing needs it to read the content.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import partial
from typing import Any

from pdgen_core import run_record, storage
from pdgen_core.errors import InputError, PdgenError
from pdgen_core.log import get_logger
from pdgen_core.stages import commit


class PublishConflict(PdgenError):
    """The pointer changed between read and write: another promote or run won (exit 1: re-run)."""


class VersionError(InputError):
    pass


def _content(output_uri: str, task: str) -> storage.Location:
    return storage.resolve(output_uri).child("content", task)


def _table(output_uri: str, task: str, version: int | None = None):
    loc = _content(output_uri, task)
    try:
        table = commit.open_table(loc, version)
    except Exception as exc:  # a version that does not exist
        if version is None or commit.open_table(loc) is None:
            raise
        raise VersionError(f"content/{task} has no version {version} (latest is "
                           f"{commit.open_table(loc).version()}); `pdgen versions {output_uri} --task {task}` "
                           "lists them") from exc
    if table is None:
        raise VersionError(f"no content table for task {task!r} under {output_uri}: no run of that "
                           "task has finished there yet")
    return table


# -- published pointer -------------------------------------------------------------------------

def pointer_loc(output_uri: str, task: str) -> storage.Location:
    return storage.resolve(output_uri).child("published", f"{task}.json")


def read_pointer(output_uri: str, task: str) -> tuple[dict | None, str | None]:
    """(pointer, etag) — etag is a version token for the conditional write."""
    loc = pointer_loc(output_uri, task)
    if loc.is_s3:
        s3 = storage.boto3_client()
        bucket, key = storage.split_s3(loc.uri)
        try:
            obj = s3.get_object(Bucket=bucket, Key=key)
        except s3.exceptions.NoSuchKey:
            return None, None
        return json.loads(obj["Body"].read()), obj["ETag"]
    if not storage.exists(loc):
        return None, None
    data = storage.read_bytes(loc)
    return json.loads(data), str(hash(data))


def write_pointer(output_uri: str, task: str, pointer: dict, etag: str | None) -> None:
    """Write the pointer only if it still has ``etag`` (None: only if absent)."""
    loc = pointer_loc(output_uri, task)
    body = json.dumps(pointer, sort_keys=True).encode()
    if loc.is_s3:
        s3 = storage.boto3_client()
        bucket, key = storage.split_s3(loc.uri)
        cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, **cond)
        except s3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise PublishConflict(
                    f"published pointer for {task!r} changed concurrently; re-run the promote") from None
            raise
        return
    import fcntl
    import os

    os.makedirs(os.path.dirname(loc.path), exist_ok=True)
    with open(loc.path + ".lock", "w") as lock:  # local folders: a file lock plays the etag's part
        fcntl.flock(lock, fcntl.LOCK_EX)
        _, now = read_pointer(output_uri, task)
        if now != etag:
            raise PublishConflict(f"published pointer for {task!r} changed concurrently; re-run")
        tmp = loc.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, loc.path)


def publish(output_uri: str, task: str, version: int, run_id: str | None, **extra: Any) -> dict:
    """Point ``published/<task>.json`` at ``version`` (made by ``run_id``), conditionally."""
    _, etag = read_pointer(output_uri, task)
    ptr = {"version": version, "run_id": run_id, "task": task,
           "published_at": dt.datetime.now(dt.timezone.utc).isoformat(), **extra}
    write_pointer(output_uri, task, ptr, etag)
    return ptr


def published_version(output_uri: str, task: str) -> int | None:
    """The published version: the content table's latest (the pointer follows it)."""
    table = commit.open_table(_content(output_uri, task))
    if table is not None:
        return table.version()
    ptr, _ = read_pointer(output_uri, task)
    return None if ptr is None else int(ptr["version"])


def sync_pointer(output_uri: str, task: str) -> dict | None:
    """Point the pointer at the content table's latest version and the run behind it, unless it
    does already (a no-op run, or a promote repeated after a crash)."""
    table = commit.open_table(_content(output_uri, task))
    if table is None:
        return None
    ptr, _ = read_pointer(output_uri, task)
    if ptr is not None and int(ptr["version"]) == table.version():
        return ptr
    info = commit_info(output_uri, task, table.version())
    extra = {"restores": int(info["pdgen.rollback_to"])} if "pdgen.rollback_to" in info else {}
    return publish(output_uri, task, table.version(), live_run(output_uri, task), **extra)


# -- promote: a staged run's rows into the content table, as one version ------------------------

def _record(output_uri: str, run_id: str) -> dict:
    rec = run_record.read_record(output_uri, run_id)
    if rec is None:
        raise run_record.unknown_promote(output_uri, run_id)
    return rec


def staged_tasks(rec: dict) -> list[str]:
    """The tasks a run holds in staged tables, not yet promoted."""
    prefix = f"staged/{rec['run_id']}/"
    return [name[len(prefix):] for name in (rec.get("tables") or {}) if name.startswith(prefix)]


def _started(rec: dict | None) -> dt.datetime | None:
    return None if rec is None or not rec.get("started_at") else dt.datetime.fromisoformat(rec["started_at"])


def newer_published(output_uri: str, rec: dict, tasks: list[str]) -> dict[str, dict]:
    """Per task, the published run if it started after ``rec``'s run (promoting would replace
    newer content with older). A published run without a record is dated by its commit."""
    mine = _started(rec)
    out = {}
    for task in tasks:
        table = commit.open_table(_content(output_uri, task))
        live = live_run(output_uri, task)
        if table is None or live is None or live == rec["run_id"] or mine is None:
            continue
        theirs = _started(run_record.read_record(output_uri, live))
        if theirs is None:
            ms = commit_info(output_uri, task, table.version()).get("timestamp")
            theirs = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc) if ms else None
        if theirs is not None and theirs > mine:
            out[task] = {"run_id": live, "started_at": theirs.isoformat(), "version": table.version()}
    return out


def _older_message(output_uri: str, run_id: str, newer: dict[str, dict]) -> str:
    what = "; ".join(f"content/{t} publishes run {n['run_id']} (started {n['started_at']}, v{n['version']})"
                     for t, n in sorted(newer.items()))
    task = sorted(newer)[0]
    return (f"run {run_id} is older than what is published: {what}. Promoting it would replace "
            f"newer content with older. To go back to older content, pick a version "
            f"(`pdgen versions {output_uri} --task {task}`) and `pdgen rollback {output_uri} --task "
            f"{task} --to VERSION`; to promote this run anyway, pass --allow-older.")


def _already_published(output_uri: str, rec: dict) -> dict[str, int]:
    """A run that committed to the content tables itself (``publish: auto``, or promoted before):
    nothing to do while its versions are the latest; once newer content is published, putting it
    back is a rollback, which ``promote`` does not do behind the user's back."""
    out, moved = {}, []
    for name, v in (rec.get("tables") or {}).items():
        if not name.startswith("content/") or v is None:
            continue
        task = name.split("/", 1)[1]
        latest = _table(output_uri, task).version()
        made = commit_info(output_uri, task, int(v)).get("pdgen.run_id") == rec["run_id"]
        if made and latest == int(v):
            sync_pointer(output_uri, task)  # a pointer an earlier pdgen left behind catches up
        if made and latest != int(v):
            moved.append(f"content/{task} v{v} (now v{latest}): `pdgen rollback {output_uri} "
                         f"--task {task} --to {v}`")
        out[task] = int(v)
    if moved:
        raise VersionError(f"run {rec['run_id']} was published already, and newer content has been "
                           "published since. To publish its content again, roll back: " + "; ".join(moved))
    return out


def promote(output_uri: str, run_id: str, allow_older: bool = False, select=None,
            review: dict | None = None) -> dict[str, int]:
    """Merge a staged run's tables into ``content/<task>`` (one version per task, under the run's
    own transaction: a promote repeated after a crash commits nothing twice), move the pointers,
    mark the record, drop the staged tables; returns task -> published version. Refuses a run
    older than the published one unless ``allow_older``, and an unknown run id with the list of
    runs that can be promoted. ``select(task, staged_loc)``, when given, returns the merge
    source factory instead of the whole staged table (``pdgen review``: the approved rows), and
    ``review`` goes into the record's ``publish.review``."""
    rec = _record(output_uri, run_id)
    tasks = staged_tasks(rec)
    if not tasks:
        return _already_published(output_uri, rec)
    out_loc = storage.resolve(output_uri)
    txn = _promote_txn(rec)
    pending = [t for t in tasks if commit.committed_version(_content(output_uri, t), run_id, txn) is None]
    newer = {} if allow_older else newer_published(output_uri, rec, pending)
    if newer:
        raise VersionError(_older_message(output_uri, run_id, newer))
    done = {}
    for task in tasks:
        staged = commit.staged_table(out_loc, run_id, task)
        content = _content(output_uri, task)
        if commit.open_table(staged) is None and task not in pending:
            done[task] = _table(output_uri, task).version()  # promoted; its staged table dropped
            continue
        src = partial(commit.staged_source, staged) if select is None else select(task, staged)
        done[task] = storage.retry_io(partial(commit.merge_content, content, src, run_id,
                                              {"pdgen.promoted": "true"}, txn), f"promote content/{task}")
        sync_pointer(output_uri, task)
    _mark_promoted(output_uri, rec, done, review)
    storage.delete_tree(out_loc.child("staged", run_id))
    get_logger(run_id=run_id).info("run.promoted", output=output_uri, versions=done, allow_older=allow_older)
    return done


def _promote_txn(rec: dict) -> int:
    """The app transaction a promote commits under: 1, or 2 for a run ``pdgen migrate`` moved out
    of the content tables (its first commit there holds transaction 1)."""
    return 2 if (rec.get("publish") or {}).get("migrated") else 1


def _mark_promoted(output_uri: str, rec: dict, done: dict[str, int], review: dict | None = None) -> None:
    """The record says the run is published now, and at which versions (its staged tables go);
    with ``review``, what a reviewed publish took (``publish.review``)."""
    rid = rec["run_id"]
    tables = {k: v for k, v in (rec.get("tables") or {}).items() if not k.startswith(f"staged/{rid}/")}
    tables.update({f"content/{t}": v for t, v in done.items()})
    gate = {**(rec.get("publish") or {}), "published": True,
            "promoted_at": dt.datetime.now(dt.timezone.utc).isoformat(), "promoted_versions": done}
    if review is not None:
        gate["review"] = review
    storage.write_json(run_record.record_loc(output_uri, rid),
                       {**rec, "status": "committed", "tables": tables, "publish": gate})


# -- history, show, diff, rollback -------------------------------------------------------------

def _log_file(output_uri: str, task: str, version: int) -> storage.Location:
    return _content(output_uri, task).child("_delta_log", f"{version:020d}.json")


def commit_info(output_uri: str, task: str, version: int) -> dict[str, Any]:
    """One version's ``commitInfo`` (its custom metadata at the top level), read from its log
    file; {} when that file is gone (log cleanup after a checkpoint)."""
    loc = _log_file(output_uri, task, version)
    if not storage.exists(loc):
        return {}
    for line in storage.read_bytes(loc).decode().splitlines():
        action = json.loads(line)
        if "commitInfo" in action:
            return {"version": version, **action["commitInfo"]}
    return {}


def live_run(output_uri: str, task: str) -> str | None:
    """The run whose content the latest version publishes: the run that committed it, or for a
    rollback, the run behind the version it restored. None for an empty table of no run."""
    table = commit.open_table(_content(output_uri, task))
    v = None if table is None else table.version()
    for _ in range(100):  # a chain of rollbacks, bounded
        if v is None:
            return None
        info = commit_info(output_uri, task, v)
        if info.get("pdgen.run_id"):
            return info["pdgen.run_id"]
        if "pdgen.rollback_to" not in info:
            return None
        v = int(info["pdgen.rollback_to"])
    return None


def commit_infos(output_uri: str, task: str) -> list[dict[str, Any]]:
    """The ``commitInfo`` of each version, read from ``_delta_log/*.json`` directly.

    ``DeltaTable.history()`` hung for minutes on a listing against moto's server (the README's
    "Notes from building it"); reading the commit files through pyarrow is plain, bounded and enough for a listing.
    """
    log = _content(output_uri, task).child("_delta_log")
    out = []
    for path in storage.list_files(log, suffix=".json", hidden=True):
        name = path.rsplit("/", 1)[-1]
        if not name[:-5].isdigit():
            continue
        with log.fs.open_input_stream(path) as f:
            for line in f.read().decode().splitlines():
                action = json.loads(line)
                if "commitInfo" in action:
                    out.append({"version": int(name[:-5]), **action["commitInfo"]})
    return sorted(out, key=lambda c: c["version"])


def iso_time(ms: int | None) -> str | None:
    """A commit's epoch milliseconds as ISO 8601 UTC to the second (``2026-12-01T20:46:37Z``)."""
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def versions(output_uri: str, task: str) -> list[dict[str, Any]]:
    """Every version of ``content/<task>``: who made it, when (ISO), its row counts; the latest
    is the published one."""
    latest = _table(output_uri, task).version()  # a clear error when there is no table
    rows = []
    for h in commit_infos(output_uri, task):
        m = h.get("operationMetrics") or {}
        rows.append({
            "version": h["version"], "run_id": h.get("pdgen.run_id"),
            "time": iso_time(h.get("timestamp")), "operation": h.get("operation"),
            "restores": int(h["pdgen.rollback_to"]) if "pdgen.rollback_to" in h else None,
            "promoted": h.get("pdgen.promoted") == "true",
            "created_empty": h.get("pdgen.created") == "empty",
            "rows_inserted": m.get("num_target_rows_inserted", m.get("num_added_rows")),
            "rows_updated": m.get("num_target_rows_updated"),
            "rows_deleted": m.get("num_target_rows_deleted"),
            "published": h["version"] == latest,
        })
    return rows


def staged_runs(output_uri: str, task: str) -> list[str]:
    """Runs holding a staged table for ``task``, waiting for ``promote``."""
    out = storage.resolve(output_uri)
    return [r for r in run_record.promotable_runs(output_uri)
            if commit.open_table(commit.staged_table(out, r, task)) is not None]


def show(output_uri: str, task: str, sku: str, version: int | None = None):
    """A sku's rows in the published content (or in ``version``); returns (rows, version)."""
    import pyarrow.compute as pc

    table = _table(output_uri, task, version)
    fs = storage.table_filesystem(_content(output_uri, task))  # native: exits cleanly (README)
    t = storage.plain_types(table.to_pyarrow_table(filesystem=fs))
    return t.filter(pc.equal(t.column("sku"), sku)).to_pylist(), table.version()


def latest_reject(output_uri: str, task: str, sku: str) -> dict[str, Any] | None:
    """The sku's most recent reject for ``task`` (reason, detail, stage, run), or None: what an
    editor needs when ``show`` finds no text."""
    import pyarrow.compute as pc

    loc = storage.resolve(output_uri).child("rejects", task)
    rej = commit.open_table(loc)
    if rej is None:
        return None
    t = storage.plain_types(rej.to_pyarrow_table(filesystem=storage.table_filesystem(loc)))
    rows = t.filter(pc.equal(t.column("sku"), sku)).to_pylist()
    return max(rows, key=lambda r: (r["rejected_at"] is not None, r["rejected_at"]), default=None)


# Lineage that, when it changes, regenerates a row just as a changed input does.
_LINEAGE = ("template", "model", "adapter", "sampling_hash")
_DIFF_COLS = ["sku", "locale", "variant", "text", "input_fingerprint", "inputs", *_LINEAGE]


def _keyed(output_uri: str, task: str, version: int) -> dict[tuple, dict]:
    fs = storage.table_filesystem(_content(output_uri, task))
    t = storage.plain_types(_table(output_uri, task, version).to_pyarrow_table(filesystem=fs))
    cols = [c for c in _DIFF_COLS if c in t.column_names]
    return {(r["sku"], r["locale"], r["variant"]): r for r in t.select(cols).to_pylist()}


def what_changed(old: dict, new: dict) -> dict[str, list]:
    """The input fields (from ``inputs``) and lineage columns that differ between two rows of a
    key, each as [old, new]; ``inputs`` is null in rows committed before it existed: unknown."""
    out: dict[str, list] = {}
    a, b = old.get("inputs"), new.get("inputs")
    if a is not None and b is not None:
        fa, fb = json.loads(a), json.loads(b)
        for k in sorted(set(fa) | set(fb)):
            if fa.get(k) != fb.get(k):
                out[k] = [fa.get(k), fb.get(k)]
    for k in _LINEAGE:
        if old.get(k) != new.get(k):
            out[k] = [old.get(k), new.get(k)]
    return out


def diff(output_uri: str, task: str, v1: int, v2: int, samples: int = 5) -> dict[str, Any]:
    """Rows added, changed and removed between two versions. A row counts as changed when its
    text did; one regenerated to the same text (its inputs changed, its words did not) is only
    counted, as ``same_text``. Each changed sample says which input fields (and lineage) changed."""
    a, b = _keyed(output_uri, task, v1), _keyed(output_uri, task, v2)
    added = sorted(set(b) - set(a))
    removed = sorted(set(a) - set(b))
    both = sorted(set(a) & set(b))
    changed = [k for k in both if a[k]["text"] != b[k]["text"]]
    same_text = sum(1 for k in both if a[k]["text"] == b[k]["text"]
                    and a[k]["input_fingerprint"] != b[k]["input_fingerprint"])
    return {
        "from": v1, "to": v2, "added": len(added), "changed": len(changed), "removed": len(removed),
        "same_text": same_text,
        "samples": {
            "added": [b[k] for k in added[:samples]],
            "changed": [{"key": list(k), "old": a[k]["text"], "new": b[k]["text"],
                         "fields": what_changed(a[k], b[k])} for k in changed[:samples]],
            "removed": [a[k] for k in removed[:samples]],
        },
    }


def rollback(output_uri: str, task: str, to: int) -> int:
    """Restore the content table to version ``to``: a new version with its rows (Delta's
    ``restore``), so the latest version is still the published one; the pointer follows. To the
    latest version itself: nothing to do, that version is returned."""
    table = _table(output_uri, task)
    if to < 0 or to > table.version():
        raise VersionError(f"version {to} does not exist (latest is {table.version()})")
    if to == table.version():  # already the published content: Delta refuses an empty restore
        sync_pointer(output_uri, task)
        return to
    table.restore(to, commit_properties=commit.CommitProperties(
        custom_metadata={"pdgen.rollback_to": str(to)}))
    new = _table(output_uri, task).version()
    sync_pointer(output_uri, task)
    get_logger().info("content.rolled_back", output=output_uri, task=task, to=to, version=new)
    return new
