"""The generation job: read -> validate -> plan -> prompt -> generate -> guard -> commit.

Everything heavy runs in Ray Data; the driver holds the spec, the set of duplicate skus and small
counters. Work is staged as Parquet under ``<output>/_staging/<run_id>/`` and committed at the end:
one Delta version per table, then the run record (written last: its existence means the run is
complete).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pdgen_core import incremental, joins, storage
from pdgen_core.guardrails import GUARDRAIL_SET_VERSION
from pdgen_core.log import get_logger
from pdgen_core.progress import Progress
from pdgen_core.ray_session import init_ray, on_every_node
from pdgen_core.models import chat
from pdgen_core.models.resolve import LANGUAGES, ModelError, ensure_on_all_nodes, model_identity, resolve_model
from pdgen_core.spec import JobSpec
from pdgen_core.stages import commit, generate, read, validate
from pdgen_core.stages.guard import GEN_SCHEMA, guard_batch
from pdgen_core.stages.plan import WORK_SCHEMA, plan_batch
from pdgen_core.run_context import RunContext
from pdgen_core.context_from_spec import build_context, wanted_fields
from pdgen_core.tasks import TASKS


def check_context(spec: JobSpec, model_path: Path) -> None:
    """model.max_model_len must fit the model: vLLM would refuse it only inside the engine actor."""
    import json

    cfg = json.loads((model_path / "config.json").read_text())
    limit = cfg.get("max_position_embeddings")
    if limit and spec.model.max_model_len and spec.model.max_model_len > limit:
        from pdgen_core.models.resolve import ModelError

        raise ModelError(
            f"model.max_model_len ({spec.model.max_model_len}) is larger than the model's context "
            f"({limit} positions in {model_path / 'config.json'}); set model.max_model_len <= {limit}")


def check_languages(spec: JobSpec) -> None:
    """A registered model that writes only some languages refuses the others before any work."""
    langs = LANGUAGES.get(spec.model.source)
    bad = [loc for loc in spec.locales if langs and loc not in langs]
    if bad:
        raise ModelError(
            f"locales {bad}: model.source {spec.model.source!r} writes only {list(langs)}; remove "
            f"them from `locales`, or run them in a job of their own with a model that writes them "
            "(pdgen-tiny is trained on Chinese catalog text)")


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class Paths:
    out: storage.Location
    run_id: str

    @property
    def staging(self) -> storage.Location:
        return self.out.child("_staging", self.run_id)

    def round(self, k: int) -> storage.Location:
        return self.staging.child(f"round-{k}")

    @property
    def validate_rejects(self) -> storage.Location:
        return self.staging.child("validate")

    def content(self, task: str) -> storage.Location:
        return self.out.child("content", task)

    def rejects(self, task: str) -> storage.Location:
        return self.out.child("rejects", task)

    def record(self) -> storage.Location:
        return self.out.child("runs", f"{self.run_id}.json")


@dataclass
class Counts:
    read: int = 0
    invalid: int = 0
    by_task: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    flags: dict[str, dict[str, int]] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    first_attempt: dict[str, int] = field(default_factory=dict)  # task -> accepted on the first attempt
    retries: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # task -> reason -> retried/passed

    def add(self, task: str, key: str, n: int = 1) -> None:
        self.by_task.setdefault(task, {"planned": 0, "unchanged": 0, "accepted": 0, "rejected": 0})
        self.by_task[task][key] = self.by_task[task].get(key, 0) + n

    def reason(self, task: str, reason: str, n: int = 1) -> None:
        r = self.reasons.setdefault(task, {})
        r[reason] = r.get(reason, 0) + n


def count_catalog_rows(uri: str, limit: int | None) -> int:
    loc, files = read.catalog_files(uri)
    n = sum(pq.ParquetFile(loc.fs.open_input_file(f)).metadata.num_rows for f in files)
    return min(n, limit) if limit else n


# Rows per call of the per-row Python stages (cleaning, planning). Ray's default hands a UDF a
# whole block, and a catalog file written with one big row group is one block: a 250k-row file
# took one worker to 8 GB in the 5M-row plan benchmark. Bounded batches keep workers flat.
UDF_BATCH_ROWS = 8192


def _reject_rows(batch: pa.Table, tasks: tuple[str, ...], run_id: str) -> pa.Table:
    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        {"sku": r["sku"], "task": t, "locale": "*", "variant": "", "stage": "validate",
         "reason": r["_reject"], "detail": r["_detail"], "attempts": 0, "run_id": run_id,
         "rejected_at": now}
        for r in batch.select(["sku", "_reject", "_detail"]).to_pylist() for t in tasks
    ]
    return pa.Table.from_pylist(rows, schema=commit.REJECT_SCHEMA)


def _skip_rows(batch: pa.Table, run_id: str) -> pa.Table:
    now = dt.datetime.now(dt.timezone.utc)
    rows = [{"sku": r["sku"], "task": r["task"], "locale": r["locale"], "variant": r["variant"],
             "stage": "plan", "reason": r["skip_reason"], "detail": None, "attempts": 0,
             "run_id": run_id, "rejected_at": now, "input_fingerprint": r["input_fingerprint"]}
            for r in batch.to_pylist()]
    return pa.Table.from_pylist(rows, schema=commit.REJECT_SCHEMA)


def _next_attempt(batch: pa.Table) -> pa.Table:
    reasons = batch.column("reason").to_pylist()
    rows = batch.select([n for n in WORK_SCHEMA.names if n != "retry_reason"]).to_pylist()
    for r, reason in zip(rows, reasons):
        r["attempt"] = int(r["attempt"]) + 1
        r["retry_reason"] = reason
    return pa.Table.from_pylist(rows, schema=WORK_SCHEMA)


def staged_files(loc: storage.Location) -> list[str]:
    return storage.list_files(loc, suffix=".parquet")


def _staged_rows(loc: storage.Location) -> int:
    """Rows written so far by a round (Parquet footers only): the progress bar's numerator."""
    n = 0
    for f in staged_files(loc):
        try:
            n += pq.read_metadata(loc.fs.open_input_file(f)).num_rows
        except Exception:  # a file being written
            pass
    return n


class Job:
    """One run of a spec. ``run()`` returns the run record."""

    def __init__(self, spec: JobSpec, run_id: str | None = None, resume: bool = False,
                 changes: str | None = None):
        if resume and not run_id:
            raise ValueError("resume needs the run id of the run to resume")
        self.spec = spec
        self.run_id = run_id or new_run_id()
        self.resume = resume
        self.changes = changes
        self.paths = Paths(storage.resolve(spec.output.uri), self.run_id)
        self.log = get_logger(run_id=self.run_id, job=spec.name)
        self.counts = Counts()
        self.timing: dict[str, float] = {}
        self.zero_shot: set[str] = set()  # adapter tasks whose card says prompt.few_shot: false

    # -- preflight: everything that can stop the job before any work -----------------------------
    def preflight(self) -> tuple[dict[str, str], Path]:
        check_languages(self.spec)
        plan = read.column_plan(self.spec.catalog, wanted_fields(self.spec))
        probe = self.paths.out.child("_staging", ".write-probe")
        storage.write_bytes(probe, b"ok")  # wrong credentials or a missing bucket fail here
        probe.fs.delete_file(probe.path)
        model_path = resolve_model(self.spec.model.source)
        check_context(self.spec, model_path)
        try:
            chat.prompt_format(self.spec.model.prompt_format, model_path)
        except ValueError as exc:
            raise ModelError(str(exc)) from None
        return plan, model_path

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        except BaseException as exc:
            # Which run to resume: the CLI names it in its message (the staged work is kept).
            # Not when preflight stopped the job: nothing was staged, a plain re-run is the fix.
            if getattr(self, "_began", False):
                exc.pdgen_run_id = self.run_id
            raise

    def _run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        started = dt.datetime.now(dt.timezone.utc)
        if storage.exists(self.paths.record()):  # the manifest: this run already completed
            self.log.info("run.already_committed")
            return storage.read_json(self.paths.record())
        plan_cols, model_path = self.preflight()
        self._began = True
        init_ray()
        model_path = ensure_on_all_nodes(self.spec.model.source) if not Path(self.spec.model.source).exists() else model_path
        model_id = model_identity(model_path, self.spec.model.revision)
        self.log.info("run.start", tasks=self.spec.tasks, mode=self.spec.mode, model=model_id,
                      catalog=self.spec.catalog.uri, output=self.spec.output.uri)
        adapters = self._adapters()
        clean = self._clean(plan_cols)
        ctx = build_context(self.spec, self.run_id, model_id, self._known_brands(clean, plan_cols),
                            adapters={t: ident for t, (ident, _) in adapters.items()},
                            model_path=model_path, zero_shot=frozenset(self.zero_shot))
        self.adapter_paths = {t: path for t, (_, path) in adapters.items()}
        self._stage_validation_rejects(clean)
        valid = clean.filter(lambda r: r["_reject"] is None)
        # Planned once into the object store (spilling to disk, never the driver): counted per
        # task, split into skips, anti-joined and generated from the same blocks.
        work = self._with_reviews(valid).map_batches(plan_batch, fn_kwargs={"ctx": ctx},
                                                     batch_format="pyarrow",
                                                     batch_size=UDF_BATCH_ROWS).materialize()
        work = self._stage_skips(work)
        work = self._incremental(work, valid.select_columns(["sku"]))
        tg = time.monotonic()
        self._to_generate = sum(v.get("planned_all", 0) for v in self.counts.by_task.values())
        if self.spec.mode == "incremental" and not self.resume:
            # What changed is small: hold it in the object store and skip the engine when empty.
            work = work.materialize()
            self._to_generate = work.count()
            if self._to_generate == 0:
                self.log.info("run.nothing_to_generate")
                work = None
        if work is not None:
            self._generate_rounds(work, ctx, model_path)
        self.timing["generate_s"] = time.monotonic() - tg
        versions = self._commit(ctx)
        self.counts.read = (storage.retry_io(partial(count_catalog_rows, self.spec.catalog.uri,
                                                     self.spec.catalog.limit), "count catalog rows")
                            if not self.changes else self.counts.invalid + self._valid_count)
        record = self._record(started, t0, versions, model_id)
        if self.spec.output.publish == "auto":
            from pdgen_core.versions import publish

            for name, v in versions.items():
                if name.startswith("content/") and v is not None:
                    publish(self.spec.output.uri, name.split("/", 1)[1], v, self.run_id)
        storage.write_json(self.paths.record(), record)
        storage.delete_tree(self.paths.staging)
        self.log.info("run.committed", counts=record["counts"], tables=versions,
                      wall_s=round(record["timing"]["wall_s"], 2))
        return record

    def _adapters(self) -> dict[str, tuple[str, str]]:
        """task -> (adapter identity for lineage and fingerprints, local folder on every node).

        ``latest`` or a version number refer to ``<output>/adapters/<task>/``; a full URI
        (``s3://.../adapters/<task>/<n>``) to another registry. vLLM loads each through a LoRA
        request per row (the ``model`` column of ray.data.llm)."""
        from pdgen_core.finetune import registry

        out = {}
        for task, ref in self.spec.model.adapters.items():
            if "://" in ref or ref.startswith("/"):
                resolve = partial(registry.resolve_adapter_uri, ref, kind="lora")
            else:
                resolve = partial(registry.resolve_adapter, self.spec.output.uri, task, ref, kind="lora")
            path, version = on_every_node(resolve)
            out[task] = (f"{task}/v{version}@{Path(path).name}", str(path))
            prompt = registry.read_card(Path(path)).get("prompt") or {}
            if prompt.get("few_shot") is False:
                self.zero_shot.add(task)
        return out

    def _clean(self, plan_cols):
        """Read + validate once into Ray's object store (spilling to disk, never the driver):
        every later pass (duplicates, brands, rejects, plan) reads the cleaned blocks."""
        raw = read.read_catalog(self.spec.catalog, plan_cols)
        if self.changes:
            raw = incremental.apply_changes(raw, incremental.read_changes(self.changes, self.spec.catalog.columns),
                                            self.spec.catalog.columns)
        clean = raw.map_batches(validate.clean_batch, batch_format="pyarrow",
                                batch_size=UDF_BATCH_ROWS).materialize()
        dups = validate.find_duplicate_skus(clean.filter(lambda r: r["_reject"] is None))
        if dups:
            clean = clean.map_batches(validate.mark_duplicates, fn_kwargs={"dup_skus": dups},
                                      batch_size=UDF_BATCH_ROWS,
                                      batch_format="pyarrow").materialize()
        return clean

    def planned_items(self):
        """Read -> validate -> fingerprint, in Ray: every work item of the catalog (lazy)."""
        plan_cols, model_path = self.preflight()
        init_ray()
        ctx = build_context(self.spec, self.run_id, model_identity(model_path, self.spec.model.revision),
                            frozenset(), model_path=model_path)
        valid = self._clean(plan_cols).filter(lambda r: r["_reject"] is None)
        return self._with_reviews(valid).map_batches(plan_batch, fn_kwargs={"ctx": ctx},
                                                     batch_format="pyarrow", batch_size=UDF_BATCH_ROWS)

    def plan_only(self) -> int:
        """Read -> validate -> fingerprint -> anti-join, all in Ray; the number of work items an
        incremental run would generate. Writes nothing (the benchmark's plan cost)."""
        work = self.planned_items()
        if self.spec.mode == "incremental":
            parts = [self._changed(work.filter(lambda r, t=t: r["task"] == t), t,
                                   self._current(t)) for t in self.spec.tasks]
            work = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        return work.count()

    def _current(self, task: str):
        """The committed keys of ``task``'s content, read once (into the object store) for both
        the changed and the deleted check; None before the first commit."""
        cur = incremental.current_keys(self.paths.content(task))
        return None if cur is None else cur.materialize()

    def _changed(self, part, task: str, current):
        """``part`` (one task's items) without those committed (``current``), or rejected by the
        guardrails, with the same fingerprint: what an incremental run generates."""
        part = incremental.anti_join(part, current)
        # Rejected by the guardrails for these very inputs (same model, sampling and seed):
        # generating again gives the same text and the same rejection.
        return incremental.anti_join(part, incremental.guard_rejected_keys(self.paths.rejects(task)))

    def _known_brands(self, clean, plan_cols) -> frozenset[str]:
        if "brand" not in plan_cols:
            return frozenset()
        # Distinct brands per block, merged on the driver (few): no shuffle.
        per_block = clean.map_batches(_distinct_brands, batch_format="pyarrow", batch_size=None)
        return frozenset(b for batch in per_block.iter_batches(batch_format="pyarrow")
                         for b in batch.column("brand").to_pylist() if b)

    def _with_reviews(self, valid):
        """Join each product's grouped reviews when a task reads them (broadcast when small)."""
        if not any(TASKS[t].needs_reviews for t in self.spec.tasks):
            return valid
        from pdgen_core.stages.reviews import GROUPED, grouped_reviews

        return joins.left_join_unique(valid, grouped_reviews(self.spec.reviews), "sku", GROUPED)

    def _stage_skips(self, work):
        """Items a task cannot run on (too_few_reviews) go to the rejects; the rest to generation."""
        if not any(TASKS[t].needs_reviews for t in self.spec.tasks):
            return work
        loc = self.paths.staging.child("plan")
        storage.delete_tree(loc)
        (work.filter(lambda r: r["skip_reason"] is not None)
             .map_batches(_skip_rows, fn_kwargs={"run_id": self.run_id}, batch_format="pyarrow")
             .write_parquet(loc.path, filesystem=loc.fs))
        return work.filter(lambda r: r["skip_reason"] is None)

    def _stage_validation_rejects(self, clean) -> None:
        loc = self.paths.validate_rejects
        storage.delete_tree(loc)
        (clean.filter(lambda r: r["_reject"] is not None)
              .map_batches(_reject_rows, fn_kwargs={"tasks": tuple(self.spec.tasks), "run_id": self.run_id},
                           batch_format="pyarrow")
              .write_parquet(loc.path, filesystem=loc.fs))

    def _incremental(self, work, valid_skus):
        """Incremental: drop items whose fingerprint is committed; count what is unchanged and
        find deleted skus. Full: everything. Both count the planned items per task."""
        self._valid_count = valid_skus.count()
        planned = {t: n for t, n in _task_counts(work).items()}
        for t in self.spec.tasks:
            self.counts.add(t, "planned", 0)
            self.counts.by_task[t]["planned_all"] = planned.get(t, 0)
        if self.spec.mode == "full":
            return work
        parts = []
        for t in self.spec.tasks:
            current = self._current(t)
            parts.append(self._changed(work.filter(lambda r, t=t: r["task"] == t), t, current))
            if not self.changes:  # a changes feed is partial: absence is not deletion
                self._stage_deleted(t, current, valid_skus)
        return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]

    def _stage_deleted(self, task: str, current, valid_skus) -> None:
        gone = incremental.deleted_keys(current, valid_skus)
        if gone is None:
            return
        out = self.paths.staging.child("deleted", task)
        storage.delete_tree(out)
        gone.write_parquet(out.path, filesystem=out.fs)

    def _generate_rounds(self, work, ctx: RunContext, model_path: Path) -> None:
        src = work
        for k in range(1, ctx.max_attempts + 1):
            loc = self.paths.round(k)
            if self.resume:  # keep what a crashed attempt staged; generate only the rest
                done = incremental.readable_files(staged_files(loc), loc.fs)
                if done:
                    self.counts.resumed += pads.dataset(done, filesystem=loc.fs).count_rows()
                src = incremental.anti_join(src, incremental.staged_keys(done, loc.fs))
                self.log.info("round.resume", round=k, staged_files=len(done))
            else:
                storage.delete_tree(loc)
            proc = generate.build(self.spec, ctx, model_path, self.adapter_paths)
            out = proc(src).map_batches(guard_batch, fn_kwargs={"ctx": ctx}, batch_format="pyarrow")
            try:
                with Progress(self._to_generate if k == 1 else 0, partial(_staged_rows, loc),
                              run_id=self.run_id, task=",".join(self.spec.tasks)) as prog:
                    out.write_parquet(loc.path, filesystem=loc.fs)
                if k == 1:
                    self.progress = prog.samples
            except Exception as exc:  # a dead engine, not a bad row: fail the job, clearly
                raise generate.EngineError(
                    f"generation failed in round {k}: {root_cause(exc)}\n"
                    "The vLLM engine died or could not start. Check model.source, "
                    "resources.memory_fraction and the worker logs.\n"
                    f"detail: {type(exc).__name__}: {str(exc)[-800:]}"
                ) from exc
            retry = [f for f in staged_files(loc)]
            if not retry or k == ctx.max_attempts:
                return
            retries = pads.dataset(retry, filesystem=loc.fs).count_rows(filter=pads.field("status") == "retry")
            if retries == 0:
                return
            import ray

            self.log.info("round.retry", round=k + 1, rows=retries)
            src = (ray.data.read_parquet(retry, filesystem=loc.fs)
                   .filter(lambda r: r["status"] == "retry")
                   .map_batches(_next_attempt, batch_format="pyarrow"))

    def _commit(self, ctx: RunContext) -> dict[str, int | None]:
        """Counts from the staged files, then one Delta commit per table. Every step is safe to
        repeat (reads, and commits that find their own run's transaction), so a transient S3
        error on the driver re-reads that step instead of failing the run (listings retry inside
        ``storage.list_files``)."""
        versions: dict[str, int | None] = {}
        retry = storage.retry_io
        gen_files = [f for k in range(1, ctx.max_attempts + 1) for f in staged_files(self.paths.round(k))]
        val_files = staged_files(self.paths.validate_rejects)
        plan_files = staged_files(self.paths.staging.child("plan"))
        fs = self.paths.out.fs
        for task in self.spec.tasks:
            self._count(task, gen_files, val_files, fs, plan_files)
            is_task = pads.field("task") == task
            c_loc = self.paths.content(task)
            deleted = staged_files(self.paths.staging.child("deleted", task))
            self.counts.deleted[task] = (retry(pads.dataset(deleted, filesystem=fs).count_rows, "count deleted")
                                         if deleted else 0)
            tombstones = deleted if self.spec.on_delete == "tombstone" else []
            if self.counts.by_task[task]["accepted"] or tombstones:
                src = partial(commit.upserts_and_deletes, gen_files,
                              is_task & (pads.field("status") == "accepted"), tombstones, fs)
                versions[f"content/{task}"] = retry(
                    partial(commit.merge_content, c_loc, src, self.run_id), f"commit content/{task}")
            else:
                versions[f"content/{task}"] = retry(partial(commit.current_version, c_loc), "read version")
            n_rej = self.counts.invalid + self.counts.by_task[task]["rejected"]
            if n_rej:
                parts = []
                if val_files:
                    parts.append((val_files, is_task, _REJECT_PROJ))
                if plan_files:
                    parts.append((plan_files, is_task, _REJECT_PROJ))
                if gen_files:
                    parts.append((gen_files, is_task & (pads.field("status") == "rejected"), _GEN_REJECT_PROJ))
                src = partial(_concat, parts, commit.REJECT_SCHEMA, fs)
                versions[f"rejects/{task}"] = retry(
                    partial(commit.append_rejects, self.paths.rejects(task), src, self.run_id),
                    f"commit rejects/{task}")
            else:
                versions[f"rejects/{task}"] = None
        return versions

    def _count(self, task: str, gen_files: list[str], val_files: list[str], fs,
               plan_files: list[str] = ()) -> None:
        c = self.counts
        c.add(task, "planned", 0)

        def reasons(files):
            return storage.retry_io(lambda: pads.dataset(files, filesystem=fs).to_table(
                columns=["reason"], filter=pads.field("task") == task), "count rejects")

        if plan_files:
            v = reasons(plan_files)
            c.add(task, "rejected", v.num_rows)
            c.by_task[task]["planned_all"] = c.by_task[task].get("planned_all", 0) + v.num_rows
            for r, n in _value_counts(v.column("reason")):
                c.reason(task, r, n)
        if val_files:
            v = reasons(val_files)
            c.invalid = v.num_rows  # one row per task per bad catalog row
            for r, n in _value_counts(v.column("reason")):
                c.reason(task, r, n)
        if not gen_files:
            bt = c.by_task[task]
            bt["planned"] = bt.pop("planned_all", 0)
            bt["unchanged"] = bt["planned"] - bt["accepted"] - bt["rejected"]
            return
        g = storage.retry_io(partial(_generated_counts, gen_files, fs, task), "count generated")
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

    def _record(self, started, t0, versions, model_id) -> dict[str, Any]:
        c = self.counts
        wall = time.monotonic() - t0
        accepted = sum(v["accepted"] for v in c.by_task.values())
        gen_s = self.timing.get("generate_s", wall)
        return {
            "run_id": self.run_id, "name": self.spec.name, "status": "committed", "mode": self.spec.mode,
            "spec": self.spec.redacted_dict(), "started_at": started.isoformat(),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "model": {"source": self.spec.model.source, "identity": model_id},
            "counts": {
                "read": c.read, "valid": c.read - c.invalid, "invalid": c.invalid,
                "accepted": accepted,
                "rejected": sum(v["rejected"] for v in c.by_task.values()),
                "unchanged": sum(v["unchanged"] for v in c.by_task.values()),
                "by_task": c.by_task, "rejects_by_reason": c.reasons, "input_flags": c.flags,
                "deleted": c.deleted, "on_delete": self.spec.on_delete, "resumed": c.resumed,
                # Guard outcomes by attempt: accepted at once, and per reason of a rejected
                # attempt how many items were retried and how many of those then passed.
                "accepted_first_attempt": c.first_attempt, "retries_by_reason": c.retries,
            },
            "tokens": {"in": c.tokens_in, "out": c.tokens_out},
            "timing": {"wall_s": wall, "generate_s": gen_s,
                       "rows_per_s": accepted / wall if wall else 0.0,
                       "output_tokens_per_s": c.tokens_out / gen_s if gen_s else 0.0},
            "tables": versions,
            "progress": getattr(self, "progress", []),
        }


def _distinct_brands(batch: pa.Table) -> pa.Table:
    return pa.table({"brand": pc.unique(batch.column("brand").combine_chunks()).cast(pa.string())})


def _generated_counts(gen_files: list[str], fs, task: str) -> dict[str, Any]:
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
        for status, n in _value_counts(t.column("status")):
            bump(out["status"], status, n)
        rejected = t.filter(pc.equal(t.column("status"), "rejected"))
        for r, n in _value_counts(rejected.column("reason")):
            bump(out["reasons"], r, n)
        accepted = t.filter(pc.equal(t.column("status"), "accepted"))
        for flags, n in _value_counts(accepted.column("input_flags")):
            for f in flags.split(","):
                bump(out["flags"], f, n)
        out["tokens_in"] += int(pc.sum(t.column("tokens_in")).as_py() or 0)
        out["tokens_out"] += int(pc.sum(t.column("tokens_out")).as_py() or 0)
    return out


def _task_counts(work) -> dict[str, int]:
    """Items per task: the task column streamed to the driver a batch at a time (no shuffle)."""
    counts: dict[str, int] = {}
    for b in work.select_columns(["task"]).iter_batches(batch_format="pyarrow", batch_size=65_536):
        for task, n in _value_counts(b.column("task")):
            counts[task] = counts.get(task, 0) + n
    return counts


def _value_counts(col: pa.ChunkedArray) -> list[tuple[str, int]]:
    vc = pc.value_counts(col)
    return [(v["values"].as_py(), v["counts"].as_py()) for v in vc if v["values"].as_py() is not None]


# Rows rejected before generation have no finish_reason column: null.
_REJECT_PROJ = {n: pads.field(n) for n in commit.REJECT_SCHEMA.names if n != "finish_reason"} | {
    "finish_reason": pads.scalar(None)}
_GEN_REJECT_PROJ = {**_REJECT_PROJ, "rejected_at": pads.field("generated_at"),
                    "finish_reason": pads.field("finish_reason")}


def _concat(parts, schema: pa.Schema, fs) -> pa.RecordBatchReader:
    """Stream (files, filter, projection) parts as one reader of ``schema``."""
    def batches():
        for files, flt, proj in parts:
            d = pads.dataset(files, filesystem=fs)
            for b in d.scanner(columns=proj, filter=flt, batch_size=8192).to_batches():
                if b.num_rows:
                    yield pa.RecordBatch.from_arrays(
                        [b.column(n).cast(schema.field(n).type) for n in schema.names], schema=schema)
    return pa.RecordBatchReader.from_batches(schema, batches())


_ERROR_LINE = re.compile(r"^\s*((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit)): (.+)$")
_WRAPPERS = ("RayTaskError", "ActorDiedError", "RaySystemError", "UserCodeException", "EngineError")


def root_cause(exc: BaseException) -> str:
    """The innermost ``SomeError: message`` line behind ``exc``: Ray wraps an engine that failed
    to start in actor and task errors whose text carries the original traceback."""
    lines = []
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        lines.extend(str(e).splitlines())
        lines.append(f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else "")
        e = e.__cause__ or e.__context__
    found = [m for m in map(_ERROR_LINE.match, lines) if m and not m.group(1).split(".")[-1].startswith(_WRAPPERS)]
    if not found:
        return f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    # the last error a traceback prints is the one raised first... of the innermost cause
    m = found[-1]
    return f"{m.group(1)}: {m.group(2).strip()[:400]}"


def run_job(spec: JobSpec, run_id: str | None = None, resume: bool = False,
            changes: str | None = None) -> dict[str, Any]:
    return Job(spec, run_id, resume=resume, changes=changes).run()
