"""The run record and its counts: ``<output>/runs/<run_id>.json``, written last (its existence
means the run committed).

The counts are read back from the staged Parquet files (footers and small column scans, a batch at
a time) rather than gathered while the stages run: a resumed run counts what the crashed attempt
staged, and a count can be repeated after a transient S3 error.

Also here: the publish decision (``publish_decision``: ``output.publish`` and the
``guardrails.min_accept_rate`` floor, recorded under ``publish``), and which runs under an output
can be resumed (staged work, no record) or promoted (a staged table, not yet promoted), so that an
unknown run id is answered with the ones that exist.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from functools import partial
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from pdgen_core import storage
from pdgen_core.errors import InputError
from pdgen_core.log import library_log_path
from pdgen_core.ray_session import session_logs
from pdgen_core.spec import JobSpec
from pdgen_core.staging import StagedFiles
from pdgen_core.stages import read


@dataclass
class Counts:
    """The run's counters, filled by the stages' staged outputs before the commit."""

    read: int = 0
    invalid: int = 0
    by_task: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    flags: dict[str, dict[str, int]] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    reviews_dropped: int = 0      # reviews without a sku or any text left after hygiene
    feed_unknown_skus: int = 0    # skus of a changes feed that are not in the catalog
    feed_beyond_limit: int = 0    # skus of a changes feed in the catalog but past catalog.limit
    first_attempt: dict[str, int] = field(default_factory=dict)  # task -> accepted on the first attempt
    retries: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # task -> reason -> retried/passed

    def add(self, task: str, key: str, n: int = 1) -> None:
        self.by_task.setdefault(task, {"planned": 0, "unchanged": 0, "accepted": 0, "rejected": 0})
        self.by_task[task][key] = self.by_task[task].get(key, 0) + n

    def reason(self, task: str, reason: str, n: int = 1) -> None:
        r = self.reasons.setdefault(task, {})
        r[reason] = r.get(reason, 0) + n


def count_catalog_rows(uri: str, limit: int | None) -> int:
    """Rows of the catalog (Parquet footers), at most ``limit``."""
    loc, files = read.catalog_files(uri)
    n = read.count_rows(files, loc.fs)
    return min(n, limit) if limit else n


def count_planned(c: Counts, tasks, work) -> None:
    """The planned items per task (``planned_all``: before the incremental anti-join)."""
    planned = task_counts(work)
    for t in tasks:
        c.add(t, "planned", 0)
        c.by_task[t]["planned_all"] = planned.get(t, 0)


def to_generate(c: Counts) -> int:
    """Items planned across tasks: the progress bar's total for a full run."""
    return sum(v.get("planned_all", 0) for v in c.by_task.values())


def count_staged(c: Counts, tasks, files: StagedFiles) -> None:
    """Every task's outcomes from the staged files (before the commit, which reads them)."""
    for task in tasks:
        count_task(c, task, files.generated, files.validate, files.fs, files.plan)


def count_task(c: Counts, task: str, gen_files: list[str], val_files: list[str], fs,
               plan_files: list[str] = ()) -> None:
    """Add one task's outcomes in the staged files (validation, plan and generation rejects,
    accepted texts, tokens, retries) to ``c``."""
    c.add(task, "planned", 0)

    def reasons(files):
        return storage.retry_io(lambda: pads.dataset(files, filesystem=fs).to_table(
            columns=["reason"], filter=pads.field("task") == task), "count rejects")

    if plan_files:
        v = reasons(plan_files)
        c.add(task, "rejected", v.num_rows)
        c.by_task[task]["planned_all"] = c.by_task[task].get("planned_all", 0) + v.num_rows
        for r, n in value_counts(v.column("reason")):
            c.reason(task, r, n)
    if val_files:
        v = reasons(val_files)
        c.invalid = v.num_rows  # one row per task per bad catalog row
        for r, n in value_counts(v.column("reason")):
            c.reason(task, r, n)
    if not gen_files:
        bt = c.by_task[task]
        bt["planned"] = bt.pop("planned_all", 0)
        bt["unchanged"] = bt["planned"] - bt["accepted"] - bt["rejected"]
        return
    g = storage.retry_io(partial(generated_counts, gen_files, fs, task), "count generated")
    for status in ("accepted", "rejected"):
        c.add(task, status, g["status"].get(status, 0))
    c.first_attempt[task] = c.first_attempt.get(task, 0) + g["first_attempt"]
    if g["retried"]:
        c.retries[task] = g["retried"]
    for r, n in g["reasons"].items():
        c.reason(task, r, n)
    for f, n in g["flags"].items():
        c.flags.setdefault(task, {})[f] = c.flags.get(task, {}).get(f, 0) + n
    c.tokens_in += g["tokens_in"]
    c.tokens_out += g["tokens_out"]
    bt = c.by_task[task]
    bt["planned"] = bt.pop("planned_all", bt["accepted"] + bt["rejected"])
    bt["unchanged"] = bt["planned"] - bt["accepted"] - bt["rejected"]


def generated_counts(gen_files: list[str], fs, task: str) -> dict[str, Any]:
    """One task's outcomes in the staged generation files, streamed a batch at a time."""
    out: dict[str, Any] = {"status": {}, "reasons": {}, "flags": {}, "tokens_in": 0, "tokens_out": 0,
                           "first_attempt": 0, "retried": {}}

    def bump(d: dict, k: str, n: int) -> None:
        d[k] = d.get(k, 0) + n

    ds = pads.dataset(gen_files, filesystem=fs)
    has_reason = "retry_reason" in ds.schema.names  # staged by an earlier version (a resume)
    scan = ds.scanner(
        columns=["status", "reason", "tokens_in", "tokens_out", "input_flags", "attempts"]
        + (["retry_reason"] if has_reason else []),
        filter=pads.field("task") == task)
    for b in scan.to_batches():
        t = pa.Table.from_batches([b])
        final = t.filter(pc.not_equal(t.column("status"), "retry"))
        first = pc.equal(final.column("attempts"), 1)
        out["first_attempt"] += int(pc.sum(pc.and_(first, pc.equal(final.column("status"), "accepted")))
                                    .as_py() or 0)
        if has_reason:  # per reason of the rejected attempt: retried items, and those that passed
            again = final.filter(pc.invert(first))
            for status, reason in zip(again.column("status").to_pylist(), again.column("retry_reason").to_pylist()):
                r = out["retried"].setdefault(reason or "unknown", {"retried": 0, "passed": 0})
                r["retried"] += 1
                r["passed"] += status == "accepted"
        for status, n in value_counts(t.column("status")):
            bump(out["status"], status, n)
        rejected = t.filter(pc.equal(t.column("status"), "rejected"))
        for r, n in value_counts(rejected.column("reason")):
            bump(out["reasons"], r, n)
        # Every item's flags once (its final row, accepted or rejected): a row flagged for PII
        # is as likely to be rejected as accepted, and counting accepted rows alone hid it.
        for flags, n in value_counts(final.column("input_flags")):
            for f in flags.split(","):
                bump(out["flags"], f, n)
        out["tokens_in"] += int(pc.sum(t.column("tokens_in")).as_py() or 0)
        out["tokens_out"] += int(pc.sum(t.column("tokens_out")).as_py() or 0)
    return out


def task_counts(work) -> dict[str, int]:
    """Items per task: the task column streamed to the driver a batch at a time (no shuffle)."""
    counts: dict[str, int] = {}
    for b in work.select_columns(["task"]).iter_batches(batch_format="pyarrow", batch_size=65_536):
        for task, n in value_counts(b.column("task")):
            counts[task] = counts.get(task, 0) + n
    return counts


def value_counts(col: pa.ChunkedArray) -> list[tuple[str, int]]:
    vc = pc.value_counts(col)
    return [(v["values"].as_py(), v["counts"].as_py()) for v in vc if v["values"].as_py() is not None]



def build_record(spec: JobSpec, run_id: str, c: Counts, started: dt.datetime, t0: float,
                 versions: dict[str, int | None], model_id: str, generate_s: float | None,
                 progress: list, gate: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run record: what ran, its counts, tokens, timing, the table versions it made and
    whether it was published (``gate``, from ``publish_decision``; status ``staged`` if not)."""
    wall = time.monotonic() - t0
    accepted = sum(v["accepted"] for v in c.by_task.values())
    gen_s = wall if generate_s is None else generate_s
    gate = gate or publish_decision(spec, c)
    return {
        "run_id": run_id, "name": spec.name, "status": "committed" if gate["published"] else "staged",
        "mode": spec.mode, "publish": gate,
        "spec": spec.redacted_dict(), "started_at": started.isoformat(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "model": {"source": spec.model.source, "identity": model_id},
        "counts": {
            "read": c.read, "valid": c.read - c.invalid, "invalid": c.invalid,
            "accepted": accepted,
            "rejected": sum(v["rejected"] for v in c.by_task.values()),
            "unchanged": sum(v["unchanged"] for v in c.by_task.values()),
            "by_task": c.by_task, "rejects_by_reason": c.reasons, "input_flags": c.flags,
            "deleted": c.deleted, "on_delete": spec.on_delete, "resumed": c.resumed,
            "reviews_dropped": c.reviews_dropped, "feed_unknown_skus": c.feed_unknown_skus,
            "feed_beyond_limit": c.feed_beyond_limit,
            # Guard outcomes by attempt: accepted at once, and per reason of a rejected
            # attempt how many items were retried and how many of those then passed.
            "accepted_first_attempt": c.first_attempt, "retries_by_reason": c.retries,
        },
        "tokens": {"in": c.tokens_in, "out": c.tokens_out},
        "timing": {"wall_s": wall, "generate_s": gen_s,
                   "rows_per_s": accepted / wall if wall else 0.0,
                   "output_tokens_per_s": c.tokens_out / gen_s if gen_s else 0.0},
        "tables": versions,
        "progress": progress,
        "logs": run_logs(),
    }


def run_logs() -> dict[str, Any]:
    """Where this run's chatter went, on the host that ran its driver: the library log (vLLM,
    Ray, warnings and Ray's C++ lines; None with ``--verbose``: stderr) and Ray's session logs
    (workers' and engines' output)."""
    lib = library_log_path()
    return {"host": socket.gethostname(), "library": str(lib) if lib else None, "ray_session": session_logs()}


# -- the publish decision: output.publish and the accept-rate floor ------------------------------

def accept_rates(c: Counts) -> dict[str, float | None]:
    """Per task, accepted / (accepted + rejected) of the items this run planned to generate
    (unchanged items and catalog rows invalid before planning do not count); None when the run
    generated nothing for the task (a no-op refresh has no rate to fall below)."""
    out: dict[str, float | None] = {}
    for task, v in c.by_task.items():
        n = v["accepted"] + v["rejected"]
        out[task] = v["accepted"] / n if n else None
    return out


def floors(spec: JobSpec) -> dict[str, float]:
    """``guardrails.min_accept_rate`` per task of the spec (a number applies to every task)."""
    m = spec.guardrails.min_accept_rate
    if m is None:
        return {}
    if isinstance(m, dict):
        return {t: float(m[t]) for t in spec.tasks if t in m}
    return {t: float(m) for t in spec.tasks}


def publish_decision(spec: JobSpec, c: Counts) -> dict[str, Any]:
    """Whether this run publishes what it commits: ``output.publish: auto`` and every task at or
    above its floor. Decided from the counts (read back from the staged files), so a resumed run
    decides the same. ``held_by`` says why not: ``staged`` (the spec asked) or
    ``min_accept_rate`` (``below`` lists the tasks and their rates)."""
    rates, floor = accept_rates(c), floors(spec)
    below = {t: rates[t] for t, f in floor.items() if rates.get(t) is not None and rates[t] < f}
    held = "min_accept_rate" if below else ("staged" if spec.output.publish == "staged" else None)
    return {"requested": spec.output.publish, "published": held is None, "held_by": held,
            "accept_rate": rates, "min_accept_rate": floor, "below": below}


def floor_message(record: dict[str, Any], output_uri: str) -> str:
    """What the CLI prints when a run was held below its floor: the tasks, and how to go on."""
    gate = record.get("publish") or {}
    by = record["counts"]["by_task"]
    parts = [f"{t} accepted {by[t]['accepted']} of {by[t]['accepted'] + by[t]['rejected']} "
             f"({r:.0%}), below guardrails.min_accept_rate {gate['min_accept_rate'][t]:g}"
             for t, r in sorted(gate.get("below", {}).items())]
    rid = record["run_id"]
    return (f"run {rid} is below its floor: " + "; ".join(parts) + ". It is committed as staged, "
            f"not published. Read it (`pdgen report {rid} --output {output_uri}`), then publish it "
            f"anyway with `pdgen promote {rid} --output {output_uri}`, or fix the cause and run again.")


# -- which runs exist: resumable (staged work, no record) and promotable (a staged table) -------

class RunNotFound(InputError):
    """A run id that names no run to resume or promote; the message lists those that exist."""


def _subfolders(loc: storage.Location) -> list[str]:
    """Names of the folders directly under ``loc`` (S3: common prefixes), sorted."""
    def listing() -> list[str]:
        if loc.fs.get_file_info(loc.path).type == pafs.FileType.NotFound:
            return []
        infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=False, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)
    return storage.retry_io(listing, f"list {loc.uri}")


def record_loc(output_uri: str, run_id: str) -> storage.Location:
    return storage.resolve(output_uri).child("runs", f"{run_id}.json")


def read_record(output_uri: str, run_id: str) -> dict[str, Any] | None:
    loc = record_loc(output_uri, run_id)
    return storage.read_json(loc) if storage.exists(loc) else None


def resumable_runs(output_uri: str) -> list[str]:
    """Runs with staged work under ``_staging/`` and no run record: those ``--resume`` finishes."""
    out = storage.resolve(output_uri)
    return [r for r in _subfolders(out.child("_staging"))
            if not r.startswith(".") and not storage.exists(out.child("runs", f"{r}.json"))]


def promotable_runs(output_uri: str) -> list[str]:
    """Runs with a staged table under ``staged/`` and a run record: those ``promote`` publishes
    (a staged table without a record belongs to a run that has not finished: resume it)."""
    out = storage.resolve(output_uri)
    return [r for r in _subfolders(out.child("staged"))
            if storage.exists(out.child("runs", f"{r}.json"))]


def _listing(runs: list[str], most: int = 20) -> str:
    shown = runs[-most:]
    more = f" (and {len(runs) - most} older)" if len(runs) > most else ""
    return ", ".join(shown) + more


def check_resumable(output_uri: str, run_id: str) -> None:
    """Refuse ``--resume RUN_ID`` when nothing was staged under that id (a typo would otherwise
    start, commit and publish a new run of that name); the message lists the resumable runs."""
    out = storage.resolve(output_uri)
    if storage.exists(out.child("runs", f"{run_id}.json")) or storage.exists(out.child("_staging", run_id)):
        return
    runs = resumable_runs(output_uri)
    which = (f"Runs that can be resumed: {_listing(runs)}." if runs else
             "No run under it can be resumed: start a new one without --resume.")
    raise RunNotFound(f"--resume {run_id}: no run {run_id!r} under {output_uri} (nothing staged, no "
                      f"run record). {which}")


def unknown_promote(output_uri: str, run_id: str) -> RunNotFound:
    """The error for ``promote RUN_ID`` when there is no record of that run."""
    runs = promotable_runs(output_uri)
    if storage.exists(storage.resolve(output_uri).child("_staging", run_id)):
        return RunNotFound(f"run {run_id!r} under {output_uri} has not finished (staged work, no run "
                           f"record): finish it with `pdgen run SPEC --resume {run_id}`, then promote it.")
    which = (f"Runs that can be promoted: {_listing(runs)}." if runs else
             "No run under it is waiting to be promoted (runs with output.publish: staged, or held "
             "below guardrails.min_accept_rate, are).")
    return RunNotFound(f"no run {run_id!r} under {output_uri}. {which}")
