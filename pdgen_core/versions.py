"""Versions of the content tables: list, show, diff, rollback, and the publish gate.

Publishing is a pointer per task, ``<output>/published/<task>.json`` = {"version", "run_id", ...},
written with an S3 conditional put (``IfMatch`` the etag read, or ``IfNoneMatch: *`` for the
first), so two promoters never overwrite each other silently. Consumers read the published version
(``pdgen show`` does by default); ``output.publish: auto`` runs move the pointer themselves,
``staged`` runs leave it for ``pdgen promote RUN_ID``. Delta time travel serves every version, so
rollback is a ``restore`` (a new version equal to an old one) plus a pointer move.
"""

from __future__ import annotations

import json
from typing import Any

from pdgen_core import storage
from pdgen_core.errors import InputError
from pdgen_core.stages import commit


class PublishConflict(Exception):
    """The pointer changed between read and write: another promote or run won."""


class VersionError(InputError):
    pass


def _content(output_uri: str, task: str) -> storage.Location:
    return storage.resolve(output_uri).child("content", task)


def _table(output_uri: str, task: str, version: int | None = None):
    dt = commit.open_table(_content(output_uri, task), version)
    if dt is None:
        raise VersionError(f"no content table for task {task!r} under {output_uri}")
    return dt


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


def publish(output_uri: str, task: str, version: int, run_id: str) -> dict:
    import datetime as dt

    _, etag = read_pointer(output_uri, task)
    ptr = {"version": version, "run_id": run_id, "task": task,
           "published_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    write_pointer(output_uri, task, ptr, etag)
    return ptr


def published_version(output_uri: str, task: str) -> int | None:
    ptr, _ = read_pointer(output_uri, task)
    return None if ptr is None else int(ptr["version"])


def promote(output_uri: str, run_id: str) -> dict[str, int]:
    """Publish every content version a run committed; returns task -> version."""
    rec = storage.read_json(storage.resolve(output_uri).child("runs", f"{run_id}.json"))
    out = {}
    for name, version in rec["tables"].items():
        if name.startswith("content/") and version is not None:
            task = name.split("/", 1)[1]
            publish(output_uri, task, int(version), run_id)
            out[task] = int(version)
    return out


# -- history, show, diff, rollback -------------------------------------------------------------

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


def versions(output_uri: str, task: str) -> list[dict[str, Any]]:
    _table(output_uri, task)  # a clear error when there is no table
    pub = published_version(output_uri, task)
    rows = []
    for h in commit_infos(output_uri, task):
        m = h.get("operationMetrics") or {}
        rows.append({
            "version": h["version"], "run_id": h.get("pdgen.run_id"),
            "time": h.get("timestamp"), "operation": h.get("operation"),
            "rows_inserted": m.get("num_target_rows_inserted", m.get("num_added_rows")),
            "rows_updated": m.get("num_target_rows_updated"),
            "rows_deleted": m.get("num_target_rows_deleted"),
            "published": h["version"] == pub,
        })
    return rows


def show(output_uri: str, task: str, sku: str, version: int | None = None, published: bool = True):
    if version is None and published:
        version = published_version(output_uri, task)
    dt = _table(output_uri, task, version)
    import pyarrow.compute as pc

    t = dt.to_pyarrow_table()
    return t.filter(pc.equal(t.column("sku"), sku)).to_pylist(), dt.version()


def diff(output_uri: str, task: str, v1: int, v2: int, samples: int = 5) -> dict[str, Any]:
    """Rows added, changed (text or fingerprint) and removed between two versions."""
    cols = ["sku", "locale", "variant", "text", "input_fingerprint"]
    a = {(r["sku"], r["locale"], r["variant"]): r
         for r in _table(output_uri, task, v1).to_pyarrow_table(columns=cols).to_pylist()}
    b = {(r["sku"], r["locale"], r["variant"]): r
         for r in _table(output_uri, task, v2).to_pyarrow_table(columns=cols).to_pylist()}
    added = sorted(set(b) - set(a))
    removed = sorted(set(a) - set(b))
    changed = sorted(k for k in set(a) & set(b)
                     if (a[k]["text"], a[k]["input_fingerprint"]) != (b[k]["text"], b[k]["input_fingerprint"]))
    return {
        "from": v1, "to": v2, "added": len(added), "changed": len(changed), "removed": len(removed),
        "samples": {
            "added": [b[k] for k in added[:samples]],
            "changed": [{"key": list(k), "old": a[k]["text"], "new": b[k]["text"]} for k in changed[:samples]],
            "removed": [a[k] for k in removed[:samples]],
        },
    }


def rollback(output_uri: str, task: str, to: int) -> int:
    """Restore the content table to version ``to`` (a new version) and publish it."""
    dt = _table(output_uri, task)
    if to < 0 or to > dt.version():
        raise VersionError(f"version {to} does not exist (latest is {dt.version()})")
    dt.restore(to, commit_properties=commit.CommitProperties(
        custom_metadata={"pdgen.rollback_to": str(to)}))
    new = _table(output_uri, task).version()
    publish(output_uri, task, new, f"rollback-to-{to}")
    return new
