"""The generation pass: the engine actors generate, guard and retry every item, and stage every
attempt under ``_staging/<run_id>/generated/``.

One pass over the work, one engine per actor for the whole job (``stages.generate.EngineActor``):
a text the guard sends back goes into the same engine again at once, with its retry's sampling,
so retries cost generations, never engine starts or passes over the data. An item's ``retry``
rows are staged beside its final one; a resumed run keeps the items a crashed attempt staged
with their final row and generates the rest.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from pdgen_core import incremental, storage
from pdgen_core.errors import STAGE_FIXES, StageError, failed_stage, root_cause
from pdgen_core.log import get_logger
from pdgen_core.progress import Progress
from pdgen_core.run_context import RunContext
from pdgen_core.spec import JobSpec
from pdgen_core.staging import RunLayout, final_rows, staged_files, staged_items
from pdgen_core.stages import generate


def stage_failure(exc: BaseException) -> StageError:
    """The error for a failed pass, named for the stage that raised: an ``EngineError`` when it
    was the engine, a ``StageError("guard" | "storage")`` otherwise."""
    stage = failed_stage(exc)
    msg = (f"generation failed ({stage}): {root_cause(exc)}\n{STAGE_FIXES[stage]}\n"
           f"detail: {type(exc).__name__}: {str(exc)[-800:]}")
    return generate.EngineError(msg) if stage == "generate" else StageError(stage, msg)


class Generation:
    """The generation pass of one run; ``resumed`` and ``progress`` are for its record."""

    def __init__(self, spec: JobSpec, ctx: RunContext, layout: RunLayout, model_path: Path,
                 adapter_paths: dict[str, str], resume: bool = False):
        self.spec, self.ctx, self.layout = spec, ctx, layout
        self.model_path, self.adapter_paths, self.resume = model_path, adapter_paths, resume
        self.log = get_logger(run_id=ctx.run_id, job=spec.name)
        self.resumed = 0
        self.progress: list = []
        self.engine: dict | None = None  # which engine generated (the record's ``engine``)

    def run(self, work, total: int) -> None:
        """Generate ``work`` (``total`` items: the progress bar's)."""
        loc = self.layout.generated
        src = self._resume_or_clear(work, loc)
        tally = _start_tally()
        out = self._stage(tally)(src)
        try:
            with Progress(total, partial(items_done, loc, tally, self.resumed), run_id=self.ctx.run_id,
                          task=",".join(self.spec.tasks)) as prog:
                out.write_parquet(loc.path, filesystem=loc.fs)
            self.progress = prog.samples
        except Exception as exc:  # a broken system, not a bad row: fail the job, naming the part
            raise stage_failure(exc) from exc
        finally:
            _stop(tally)

    def _stage(self, tally):
        """The generate stage: the generation service when one is up that serves this job's model
        and settings (``pdgen_core.service``), else the job's own engine actors."""
        from pdgen_core import service

        kwargs = generate.engine_kwargs(self.spec, enable_lora=bool(self.adapter_paths), model_path=self.model_path)
        try:
            found, why = service.find(self.spec, self.ctx.model, kwargs)
        except Exception as exc:  # a service that cannot answer is a service that is not there
            found, why = None, f"the service did not answer: {type(exc).__name__}: {str(exc)[:200]}"
        if found is not None:
            self.engine = {"kind": "service", "app": service.APP, "replicas": found.get("replicas"),
                           "started_at": found.get("started_at")}
            self.log.info("generation.engine", engine="service", app=service.APP, reason=why)
            return service.build(self.spec, self.ctx, self.adapter_paths, tally, int(found.get("replicas") or 1))
        self.engine = {"kind": "actors", "replicas": self.spec.resources.replicas, "why_not_service": why}
        self.log.info("generation.engine", engine="actors", replicas=self.spec.resources.replicas, reason=why)
        return generate.build(self.spec, self.ctx, self.model_path, self.adapter_paths, tally)

    def _resume_or_clear(self, src, loc: storage.Location):
        if not self.resume:
            storage.delete_tree(loc)
            return src
        done = incremental.readable_files(staged_files(loc), loc.fs)
        if done:
            self.resumed += final_rows(done, loc.fs)
        self.log.info("generate.resume", staged_files=len(done))
        return incremental.anti_join(src, incremental.staged_keys(done, loc.fs))


def _start_tally():
    """A ``generate.Tally`` actor for this run's progress, or None where Ray cannot make one."""
    import ray

    try:
        return ray.remote(num_cpus=0)(generate.Tally).remote()
    except Exception:
        return None


def _stop(tally) -> None:
    if tally is not None:
        import ray

        ray.kill(tally)


def items_done(loc: storage.Location, tally, resumed: int) -> int:
    """Items finished so far: what the engines told the tally (plus a resumed run's items staged
    before), or the staged files' count when that is more or the tally cannot answer."""
    staged = staged_items(loc)
    if tally is None:
        return staged
    import ray

    try:
        told = ray.get(tally.count.remote(), timeout=5)
    except Exception:
        return staged
    return max(staged, resumed + told)
