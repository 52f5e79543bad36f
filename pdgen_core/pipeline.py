"""The generation run: read -> validate -> plan -> prompt -> generate -> guard -> commit.

This module is the order of the stages and nothing else; each concern lives in a module named for
it: ``preflight`` (checks before any work), ``context_from_spec`` (the workers' ``RunContext``),
``staging`` (the ``_staging/<run_id>/`` layout), ``incremental`` (what a refresh regenerates),
``generation`` (generate -> guard -> write, retries in the same engine), ``stages.commit`` (one Delta version per
table) and ``run_record`` (the counts and the record, written last: its existence means the run
is complete).

Everything heavy runs in Ray Data; the driver holds the spec, the set of duplicate skus and small
counters.
"""

from __future__ import annotations

import datetime as dt
import time
from functools import partial
from pathlib import Path
from typing import Any

from pdgen_core import incremental, run_record, storage
from pdgen_core import preflight as checks
from pdgen_core.context_from_spec import build_context
from pdgen_core.finetune.registry import RunAdapters, adapters_for_run
from pdgen_core.log import get_logger
from pdgen_core.models.resolve import ensure_on_all_nodes, model_identity
from pdgen_core.ray_session import init_ray
from pdgen_core.generation import Generation
from pdgen_core.run_context import RunContext
from pdgen_core.spec import JobSpec
from pdgen_core.staging import RunLayout, StagedFiles, new_run_id
from pdgen_core.stages import commit, read, rejects, validate
from pdgen_core.stages.contract import apply
from pdgen_core.stages.plan import PLAN
from pdgen_core.stages.reviews import with_reviews
from pdgen_core.tasks import TASKS
from pdgen_core.versions import sync_pointer

class GenerationRun:
    """One run of a job spec. ``run()`` returns the run record."""

    # A changes feed's skus are pushed into the reads of the catalog and of the committed keys.
    # False reads everything and narrows after (the benchmark's old path, side by side).
    feed_pushdown = True

    def __init__(self, spec: JobSpec, run_id: str | None = None, resume: bool = False,
                 changes: str | None = None):
        if resume and not run_id:
            raise ValueError("resume needs the run id of the run to resume")
        self.spec = spec
        self.run_id = run_id or new_run_id()
        self.resume = resume
        self.changes = changes
        self.layout = RunLayout(storage.resolve(spec.output.uri), self.run_id)
        self.log = get_logger(run_id=self.run_id, job=spec.name)
        self.counts = run_record.Counts()
        self._began = False  # past preflight: something may be staged, so --resume applies
        self.gate: dict[str, Any] | None = None  # the publish decision, made at the commit
        self.feed_skus: list[str] | None = None  # a changes feed's skus, once read

    def preflight(self) -> tuple[dict[str, str], Path]:
        """Every check that can stop the run before any work (``pdgen_core.preflight``)."""
        return checks.preflight(self.spec, self.layout)

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        except BaseException as exc:
            # Which run to resume: the CLI names it in its message (the staged work is kept).
            # Not when preflight stopped the run: nothing was staged, a plain re-run is the fix.
            if self._began:
                exc.pdgen_run_id = self.run_id
            raise

    def _run(self) -> dict[str, Any]:
        t0, started = time.monotonic(), dt.datetime.now(dt.timezone.utc)
        checks.check_endpoint(self.spec)  # before the first S3 call: a dead endpoint fails now
        if storage.exists(self.layout.record()):  # the manifest: this run already completed
            self.log.info("run.already_committed")
            return storage.read_json(self.layout.record())
        if self.resume:  # an unknown id is refused, not started as a new run of that name
            run_record.check_resumable(self.spec.output.uri, self.run_id)
        plan_cols, model_path = self.preflight()
        self._began = True
        self._mark_started(started)
        init_ray()
        if not Path(self.spec.model.source).exists():
            model_path = ensure_on_all_nodes(self.spec.model.source)
        model_id = model_identity(model_path, self.spec.model.revision)
        self.log.info("run.start", tasks=self.spec.tasks, mode=self.spec.mode, model=model_id,
                      catalog=self.spec.catalog.uri, output=self.spec.output.uri)
        adapters = adapters_for_run(self.spec.output.uri, self.spec.model.adapters)
        clean = self._clean(plan_cols)
        ctx = self._context(model_id, model_path, adapters, clean, plan_cols)
        self._stage_validation_rejects(clean)
        valid = clean.filter(expr=ok("reject_reason"))
        # Planned once into the object store (spilling to disk, never the driver): counted per
        # task, split into skips, anti-joined and generated from the same blocks.
        work = self._plan(valid, ctx).materialize()
        work = self._stage_plan_rejects(work)
        valid_count = valid.count()
        run_record.count_planned(self.counts, self.spec.tasks, work)
        work = self._incremental(work, valid.select_columns(["sku"]))
        gen = Generation(self.spec, ctx, self.layout, model_path, adapters.paths, resume=self.resume)
        tg = time.monotonic()
        self._generate(gen, work)
        generate_s = time.monotonic() - tg
        versions = self._commit(gen)
        self.counts.read = self._catalog_rows(valid_count)
        record = run_record.build_record(self.spec, self.run_id, self.counts, started, t0, versions,
                                         model_id, generate_s, gen.progress, gate=self.gate)
        record["engine"] = gen.engine  # the job's own engine actors, or the generation service
        return self._finish(record, versions)

    def _mark_started(self, started: dt.datetime) -> None:
        """``_staging/<run_id>/run.json``: the run has begun, so ``--resume`` knows the id even if
        it crashes before staging a row. A resume keeps the first attempt's."""
        marker = self.layout.staging.child("run.json")
        if not storage.exists(marker):
            storage.retry_io(partial(storage.write_json, marker, {
                "run_id": self.run_id, "name": self.spec.name, "started_at": started.isoformat()}),
                "mark the run started")

    def _context(self, model_id: str, model_path: Path, adapters: RunAdapters, clean,
                 plan_cols) -> RunContext:
        brands = validate.known_brands(clean) if "brand" in plan_cols else frozenset()
        return build_context(self.spec, self.run_id, model_id, brands, adapters=adapters.identities,
                             model_path=model_path, zero_shot=adapters.zero_shot)

    def _clean(self, plan_cols):
        """Read + validate once into Ray's object store (spilling to disk, never the driver):
        every later pass (duplicates, brands, rejects, plan) reads the cleaned blocks."""
        feed = incremental.read_changes(self.changes, self.spec.catalog.columns) if self.changes else None
        self.feed_skus = incremental.feed_skus(feed) if feed is not None else None
        raw = read.read_catalog(self.spec.catalog, plan_cols,
                                skus=self.feed_skus if self.feed_pushdown else None)
        if feed is not None:
            raw = incremental.apply_changes(raw, feed, self.spec.catalog.columns)
        clean = apply(raw, validate.CLEAN).materialize()
        if feed is not None:
            unknown, past = incremental.feed_misses(feed, clean, self.spec.catalog)
            self.counts.feed_unknown_skus, self.counts.feed_beyond_limit = len(unknown), len(past)
            if unknown or past:
                self.log.warning("feed.skus_skipped", not_in_catalog=len(unknown), beyond_limit=len(past),
                                 limit=self.spec.catalog.limit, examples=(unknown + past)[:5])
        dups = validate.find_duplicate_skus(clean.filter(expr=ok("reject_reason")))
        if dups:
            clean = apply(clean, validate.MARK_DUPLICATES, dup_skus=dups).materialize()
        return clean

    def _plan(self, valid, ctx: RunContext):
        joined, self.counts.reviews_dropped = with_reviews(valid, self.spec)
        return apply(joined, PLAN, ctx=ctx)

    def _stage_validation_rejects(self, clean) -> None:
        bad = apply(clean.filter(expr=~ok("reject_reason")), rejects.VALIDATION_REJECTS,
                    tasks=tuple(self.spec.tasks), run_id=self.run_id)
        rejects.stage(bad, self.layout.validate_rejects)

    def _stage_plan_rejects(self, work):
        """Items a task cannot run on (too_few_reviews) go to the rejects; the rest to generation."""
        if not any(TASKS[t].needs_reviews for t in self.spec.tasks):
            return work
        skipped = apply(work.filter(expr=~ok("reject_reason")), rejects.PLAN_REJECTS,
                        run_id=self.run_id)
        rejects.stage(skipped, self.layout.plan_rejects)
        return work.filter(expr=ok("reject_reason"))

    def _incremental(self, work, valid_skus):
        """Incremental: drop items whose fingerprint is committed, and stage the deleted skus.
        Full: everything."""
        if self.spec.mode == "full":
            return work
        # A changes feed is partial: absence is not deletion.
        return incremental.narrow(work, self.layout, self.spec.tasks,
                                  None if self.changes else valid_skus, skus=self._feed_skus(valid_skus))

    def _generate(self, gen: Generation, work) -> None:
        total = run_record.to_generate(self.counts)
        if self.spec.mode == "incremental" and not self.resume:
            # What changed is small: hold it in the object store and skip the engine when empty.
            work = work.materialize()
            total = work.count()
            if total == 0:
                self.log.info("run.nothing_to_generate")
                return
        gen.run(work, total)

    def _commit(self, gen: Generation) -> dict[str, int | None]:
        """Counts from the staged files, then one Delta commit per table."""
        files = StagedFiles.of(self.layout)
        run_record.count_staged(self.counts, self.spec.tasks, files)
        self.counts.resumed = gen.resumed
        self.gate = self._publish_decision()
        return commit.commit_run(self.layout, files, self.spec.tasks, self.counts,
                                 tombstone=self.spec.on_delete == "tombstone",
                                 publish=self.gate["published"])

    def _publish_decision(self) -> dict[str, Any]:
        """Publish, or hold as staged (``output.publish: staged``, a task below
        ``guardrails.min_accept_rate``). A resume whose first attempt already committed to the
        content tables stays published: a run's rows reach the content table once."""
        gate = run_record.publish_decision(self.spec, self.counts)
        if not gate["published"] and any(commit.committed_version(self.layout.content(t), self.run_id)
                                         is not None for t in self.spec.tasks):
            gate = {**gate, "published": True, "held_by": None, "committed_before_resume": True}
        if gate["held_by"] == "min_accept_rate":
            self.log.warning("run.below_floor", below=gate["below"], floor=gate["min_accept_rate"])
        return gate

    def _catalog_rows(self, valid_count: int) -> int:
        if self.changes:
            return self.counts.invalid + valid_count
        return storage.retry_io(partial(run_record.count_catalog_rows, self.spec.catalog.uri,
                                        self.spec.catalog.limit), "count catalog rows")

    def _finish(self, record: dict[str, Any], versions: dict[str, int | None]) -> dict[str, Any]:
        """Move the published pointers to the content tables' latest versions (a staged run
        changed none of them, but may have created one empty), write the record last, drop the
        staging folder."""
        for task in self.spec.tasks:
            sync_pointer(self.spec.output.uri, task)
        storage.write_json(self.layout.record(), record)
        storage.delete_tree(self.layout.staging)
        self.log.info("run.committed", counts=record["counts"], tables=versions,
                      wall_s=round(record["timing"]["wall_s"], 2))
        return record

    # -- planning without generating (the benchmark's plan cost) ---------------------------------
    def planned_items(self):
        """Read -> validate -> fingerprint, in Ray: every work item of the catalog (lazy)."""
        plan_cols, model_path = self.preflight()
        init_ray()
        ctx = build_context(self.spec, self.run_id, model_identity(model_path, self.spec.model.revision),
                            frozenset(), model_path=model_path)
        return self._plan(self._clean(plan_cols).filter(expr=ok("reject_reason")), ctx)

    def plan_only(self) -> int:
        """Read -> validate -> fingerprint -> anti-join, all in Ray; the number of work items an
        incremental run would generate. Writes nothing."""
        work = self.planned_items()
        if self.spec.mode == "incremental":
            if self.changes:  # a feed's few items: held once, for their skus and the anti-join
                work = work.materialize()
            work = incremental.narrow(work, self.layout, self.spec.tasks,
                                      skus=self._feed_skus(work.select_columns(["sku"])))
        return work.count()

    def _feed_skus(self, rows) -> list[str] | None:
        """With a changes feed, the skus of ``rows`` (the run's catalog rows, narrowed to the
        feed: at most its size) as the work items carry them, cleaned: the committed and
        rejected keys are read for these only. None without a feed or without pushdown."""
        if not self.changes or not self.feed_pushdown:
            return None
        return sorted({s for b in rows.iter_batches(batch_format="pyarrow")
                       for s in b.column("sku").to_pylist() if s is not None})


def ok(reason: str):
    """Rows whose ``reason`` column is null (not rejected, not skipped), as a Ray Data expression:
    Arrow compute on whole blocks. A Python predicate per row cost 15-19 s per pass at 1M rows."""
    from ray.data.expressions import col

    return col(reason).is_null()


def run_job(spec: JobSpec, run_id: str | None = None, resume: bool = False,
            changes: str | None = None) -> dict[str, Any]:
    return GenerationRun(spec, run_id, resume=resume, changes=changes).run()
