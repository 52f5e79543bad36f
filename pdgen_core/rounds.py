"""Generation rounds: generate -> guard -> write, then again for the texts the guard sent back.

Round ``k`` reads the items to write (round 1: the plan; later: round ``k-1``'s ``retry`` rows,
attempt + 1, with the reason they failed) and stages every row, accepted, retry or rejected,
under ``_staging/<run_id>/round-<k>/``. The last round has no retries: the guard rejects instead.
A resumed run keeps what a crashed attempt staged and generates only the rest.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads

from pdgen_core import incremental, storage
from pdgen_core.log import get_logger
from pdgen_core.progress import Progress
from pdgen_core.run_context import RunContext
from pdgen_core.spec import JobSpec
from pdgen_core.staging import RunLayout, staged_files, staged_rows
from pdgen_core.stages import generate
from pdgen_core.stages.contract import RAY_DEFAULT, RowStage, apply
from pdgen_core.stages.guard import GUARD
from pdgen_core.stages.plan import WORK_SCHEMA
from pdgen_core.errors import STAGE_FIXES, StageError, failed_stage, root_cause


def next_attempt(batch: pa.Table) -> pa.Table:
    """Retry rows as work items again: attempt + 1, ``retry_reason`` the reason they failed."""
    reasons = batch.column("reason").to_pylist()
    rows = batch.select([n for n in WORK_SCHEMA.names if n != "retry_reason"]).to_pylist()
    for r, reason in zip(rows, reasons):
        r["attempt"] = int(r["attempt"]) + 1
        r["retry_reason"] = reason
    return pa.Table.from_pylist(rows, schema=WORK_SCHEMA)


NEXT_ATTEMPT = RowStage("guard", next_attempt, needs=frozenset({"reason", "attempt"}), makes=WORK_SCHEMA,
                        one_to_one=True, batch_size=RAY_DEFAULT)


def stage_failure(exc: BaseException, k: int) -> StageError:
    """The error for a failed round, named for the stage that raised: an ``EngineError`` when it
    was the engine, a ``StageError("guard" | "storage")`` otherwise."""
    stage = failed_stage(exc)
    msg = (f"generation failed in round {k} ({stage}): {root_cause(exc)}\n{STAGE_FIXES[stage]}\n"
           f"detail: {type(exc).__name__}: {str(exc)[-800:]}")
    return generate.EngineError(msg) if stage == "generate" else StageError(stage, msg)


class Rounds:
    """The generation rounds of one run; ``resumed`` and ``progress`` are for its record."""

    def __init__(self, spec: JobSpec, ctx: RunContext, layout: RunLayout, model_path: Path,
                 adapter_paths: dict[str, str], resume: bool = False):
        self.spec, self.ctx, self.layout = spec, ctx, layout
        self.model_path, self.adapter_paths, self.resume = model_path, adapter_paths, resume
        self.log = get_logger(run_id=ctx.run_id, job=spec.name)
        self.resumed = 0
        self.progress: list = []

    def run(self, work, total: int) -> None:
        """Generate ``work`` (``total`` items: the progress bar's) round by round."""
        src = work
        for k in range(1, self.ctx.max_attempts + 1):
            loc = self.layout.round(k)
            src = self._resume_or_clear(src, loc, k)
            self._write(src, loc, k, total if k == 1 else 0)
            src = self._retries(loc, k)
            if src is None:
                return

    def _resume_or_clear(self, src, loc: storage.Location, k: int):
        if not self.resume:
            storage.delete_tree(loc)
            return src
        # keep what a crashed attempt staged; generate only the rest
        done = incremental.readable_files(staged_files(loc), loc.fs)
        if done:
            self.resumed += pads.dataset(done, filesystem=loc.fs).count_rows()
        self.log.info("round.resume", round=k, staged_files=len(done))
        return incremental.anti_join(src, incremental.staged_keys(done, loc.fs))

    def _write(self, src, loc: storage.Location, k: int, total: int) -> None:
        proc = generate.build(self.spec, self.ctx, self.model_path, self.adapter_paths)
        out = apply(proc(src), GUARD, ctx=self.ctx)
        try:
            with Progress(total, partial(staged_rows, loc), run_id=self.ctx.run_id,
                          task=",".join(self.spec.tasks)) as prog:
                out.write_parquet(loc.path, filesystem=loc.fs)
            if k == 1:
                self.progress = prog.samples
        except Exception as exc:  # a broken system, not a bad row: fail the job, naming the part
            raise stage_failure(exc, k) from exc

    def _retries(self, loc: storage.Location, k: int):
        """The next round's input, or None when there is no next round."""
        files = staged_files(loc)
        if not files or k == self.ctx.max_attempts:
            return None
        retries = pads.dataset(files, filesystem=loc.fs).count_rows(filter=pads.field("status") == "retry")
        if retries == 0:
            return None
        import ray

        self.log.info("round.retry", round=k + 1, rows=retries)
        retry = ray.data.read_parquet(files, filesystem=loc.fs).filter(lambda r: r["status"] == "retry")
        return apply(retry, NEXT_ATTEMPT)
