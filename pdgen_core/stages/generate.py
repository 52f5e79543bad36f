"""Generate: Ray Data actors that each host one vLLM engine for the whole job, and guard what it
writes as it writes it (``EngineActor``); a guard retry goes back into the same engine.

This is the one place where scheduling knobs from the spec (replicas, batch size, GPUs and CPUs
per replica) reach Ray: ``map_batches_kwargs``. A per-row engine error (a prompt the engine
refuses) becomes a reject with reason ``engine_error``; a dead engine raises ``EngineError``.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from pdgen_core import metrics
from pdgen_core.errors import StageError
from pdgen_core.log import get_logger
from pdgen_core.run_context import RunContext
from pdgen_core.spec import JobSpec
from pdgen_core.stages.guard import GEN_SCHEMA, judge, next_attempt
from pdgen_core.stages.plan import WORK_SCHEMA
from pdgen_core.stages.prompt import engine_request
from pdgen_core.tasks import TASKS


class EngineError(StageError):
    """The vLLM engine could not start or died; the job fails with this message."""

    def __init__(self, message: str):
        super().__init__("generate", message)

    def __reduce__(self):
        return type(self), (self.message,)


def max_num_seqs(spec: JobSpec) -> int:
    """Sequences the engine runs at once: half the rows of a call (``rows_per_call``), at most
    256, so that as sequences finish, queued ones take their place. (Measured with ray.data.llm,
    make bench: engines running all they held drained in waves, 0.45 of plain vLLM's rate.)"""
    res = spec.resources
    return max(16, min(256, res.batch_size * res.max_concurrent_batches // 2))


DEFAULT_CONTEXT = 2048


def context_length(spec: JobSpec, model_path: Path | None = None) -> int:
    """``model.max_model_len``, else the model's own context (``max_position_embeddings``), at
    most ``DEFAULT_CONTEXT``: a 30-layer model's KV cache costs 46 KB per token on the CPU."""
    if spec.model.max_model_len:
        return spec.model.max_model_len
    cfg = json.loads((model_path / "config.json").read_text()) if model_path else {}
    return min(DEFAULT_CONTEXT, int(cfg.get("max_position_embeddings") or DEFAULT_CONTEXT))


def cpu_memory_fraction(model_path: Path | None) -> float:
    """vLLM's CPU KV-cache share of the NUMA node's memory when the spec sets none. 0.1 is enough
    for pdgen-tiny; SmolLM2-135M (538 MB of fp32 weights) refuses to start with it ("less than
    requested memory for kv"), so models over 100 MB of weights get 0.3."""
    weights = sum(f.stat().st_size for f in model_path.glob("*.safetensors")) if model_path else 0
    return 0.3 if weights > (100 << 20) else 0.1


def engine_kwargs(spec: JobSpec, enable_lora: bool, model_path: Path | None = None) -> dict[str, Any]:
    res = spec.resources
    max_len = context_length(spec, model_path)
    kw: dict[str, Any] = {
        "max_model_len": max_len,
        "enable_prefix_caching": True,
        "max_num_seqs": max_num_seqs(spec),
        # No per-step scheduler stats (vLLM's serving default; 3.3 s of 10 s of output processing
        # at 2,000 pdgen-tiny rows, py-spy, when ray.data.llm's AsyncLLM kept them on).
        "disable_log_stats": True,
    }
    if res.gpus_per_replica == 0:
        # vLLM's CPU backend: eager mode, fp32 for tiny models, and a bounded share of host memory
        # (the default 0.92 of a NUMA node fails when other processes hold memory).
        kw.update(enforce_eager=True, dtype="float32",
                  gpu_memory_utilization=res.memory_fraction or cpu_memory_fraction(model_path))
        # Chunked prefill discards the token sampled for a partial prompt and rewinds the request's
        # generator, which CPU generators refuse ("CPU Generator does not use offset") when a
        # request carries a seed, as ours all do. Whole-prompt prefills avoid that path.
        kw.update(enable_chunked_prefill=False,
                  max_num_batched_tokens=max(max_len, 8192))
        # The worker runs inside the engine core, and the engine core inside the actor
        # (map_batches_kwargs clears VLLM_ENABLE_V1_MULTIPROCESSING): vLLM's default on the CPU
        # is two more processes, one spinning on a shared-memory queue beside Ray's own work.
        kw["distributed_executor_backend"] = "uni"
    else:
        kw.update(tensor_parallel_size=res.gpus_per_replica,
                  gpu_memory_utilization=res.memory_fraction or 0.9)
    if any(TASKS[t].output == "json" for t in spec.tasks):
        # Guided decoding for JSON tasks; without disable_any_whitespace a weak model spends its
        # whole token budget on JSON whitespace (a random-weight model did, measured when the
        # project began; the shared design notes beside the repo, ../shared/DESIGN.md, keep it).
        kw["structured_outputs_config"] = {"backend": "xgrammar", "disable_any_whitespace": True}
    if enable_lora:
        kw.update(enable_lora=True, max_lora_rank=res.max_lora_rank, max_loras=max(1, len(spec.tasks)))
    return kw


def rows_per_call(spec: JobSpec) -> int:
    """Rows an engine actor takes per call: ``batch_size x max_concurrent_batches``, the rows
    ray.data.llm kept in flight in one actor. All of them go into the engine at once, so it runs
    ``max_num_seqs`` sequences with the rest queued, and only the slowest few of a call run alone."""
    res = spec.resources
    return res.batch_size * res.max_concurrent_batches


def engine_threads(spec: JobSpec) -> int | None:
    """Torch threads for a CPU engine (``resources.engine_threads``, else ``cpus_per_replica``),
    or None on GPUs (vLLM's own choice stands)."""
    res = spec.resources
    if res.gpus_per_replica:
        return None
    return res.engine_threads or res.cpus_per_replica


def map_batches_kwargs(spec: JobSpec) -> dict[str, Any]:
    """Where the engine actors run and how often a dead one is replaced.

    - CPU: ``cpus_per_replica`` reserved; the engine core runs inside the actor
      (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: no engine process beside it, about 7 s less engine
      start here) with ``engine_threads`` torch threads (vLLM's own CPU executor would pin every
      core but one whatever OMP_NUM_THREADS says).
    - GPU, one per replica: ``num_gpus=1``. Tensor parallel: vLLM's Ray executor, in a placement
      group of one GPU bundle per shard made per actor (as ray.data.llm does), so that Ray Data
      reserves no GPU itself.
    - A dead engine kills its actor, and Ray Data would replace it forever (``max_restarts=-1``):
      an engine that dies deterministically would loop without end. A killed worker is replaced
      ``max_engine_restarts`` times, its batch retried, then the job fails. (An engine that never
      starts fails the job at once: Ray Data's ``max_consecutive_actor_init_deaths`` is 0.)"""
    res = spec.resources
    kw: dict[str, Any] = {"concurrency": res.replicas, "batch_size": rows_per_call(spec),
                          "max_restarts": res.max_engine_restarts,
                          "max_task_retries": res.max_engine_restarts}
    threads = engine_threads(spec)
    if threads is not None:
        kw["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": str(threads), "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}}
    if res.gpus_per_replica == 0:
        kw["num_cpus"] = res.cpus_per_replica
    elif res.gpus_per_replica == 1:
        kw.update(num_cpus=res.cpus_per_replica, num_gpus=1)
    else:
        bundles = [{"GPU": 1, "CPU": res.cpus_per_replica}] + [{"GPU": 1}] * (res.gpus_per_replica - 1)
        kw.update(num_cpus=0, num_gpus=0, ray_remote_args_fn=partial(_placement_group, bundles))
    return kw


def _placement_group(bundles: list[dict[str, float]]) -> dict[str, Any]:
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = ray.util.placement_group(bundles, strategy="PACK")
    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)}


def build(spec: JobSpec, ctx: RunContext, model_path: Path, adapter_paths: dict[str, str] | None = None,
          tally: Any = None):
    """The generate stage: work items in, ``GEN_SCHEMA`` rows out (every attempt of every item:
    the guard's verdict on each, its retries beside it), from one vLLM engine per actor that
    lives for the whole job. ``tally`` (a ``Tally`` actor handle, or None) hears of every item
    the engines finish, for the driver's progress bar."""
    kwargs = engine_kwargs(spec, enable_lora=bool(adapter_paths), model_path=model_path)
    if spec.resources.gpus_per_replica > 1:
        kwargs["distributed_executor_backend"] = "ray"
    ctor = {"model_path": str(model_path), "engine_kwargs": kwargs, "ctx": ctx,
            "adapter_paths": dict(adapter_paths or {}), "tally": tally, "model_source": spec.model.source}

    def apply(ds):
        return ds.map_batches(EngineActor, fn_constructor_kwargs=ctor, batch_format="pyarrow",
                              **map_batches_kwargs(spec))
    return apply


class Tally:
    """Items the engines have finished in this run, summed across actors: the progress bar's
    numerator while a call is still running. The staged files count an item only when its whole
    batch is written (one engine call of up to ``rows_per_call`` items, minutes on a CPU), so a
    bar fed by them sat at 0 until the end, then jumped (issue 20). A Ray actor of no CPU, made
    by the driver (``generation.Generation``) and killed with the run."""

    def __init__(self):
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n

    def count(self) -> int:
        return self.n


class Told:
    """An engine actor's reports to the ``Tally``: at most one message a second, fire and forget
    (a progress bar must never slow the engine or fail the run)."""

    def __init__(self, tally: Any, every_s: float = 1.0, clock=time.monotonic):
        self.tally, self.every_s, self.clock = tally, every_s, clock
        self.pending, self.last = 0, clock()

    def done(self, n: int) -> None:
        self.pending += n
        if self.clock() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.tally is None or not self.pending:
            return
        try:
            self.tally.add.remote(self.pending)
        except Exception:  # a dead tally: the bar falls back on the staged files
            self.tally = None
        self.pending, self.last = 0, self.clock()


def node_model_path(source: str | None, driver_path: str) -> str:
    """The model folder on the node this engine runs on. A fetched or converted model (``s3://``,
    ``.gguf``, a registered name) lives in each node's own cache (``PDGEN_CACHE_DIR``), filled by
    ``models.resolve.ensure_on_all_nodes`` before the job starts, so resolving it here reads that
    cache; the driver's path is another node's folder (issue 22). A local folder is the spec's
    own path, the same on every node."""
    from pdgen_core.models.resolve import fetched_per_node, resolve_model

    if source and fetched_per_node(source):
        return str(resolve_model(source))
    return driver_path


class EngineActor:
    """One vLLM engine, and the guard beside it. Every row of a call goes into the engine at
    once; each finished text is judged as it comes out, and a text the guard sends back goes in
    again at once with its retry's sampling (``prompt.request_sampling``), while the engine is
    still busy with the rest. So a retry costs one more generation, never one more engine start
    or one more pass over the data (ray.data.llm's processor started an engine per pass: about
    20 s per run with retries on this machine, minutes for a large model on a GPU).

    What comes out is every attempt: a ``retry`` row per rejected attempt that went round again,
    and the item's final row (``accepted`` or ``rejected``), all from one call; a resumed run
    regenerates an item whose final row was not staged (``incremental.staged_keys``)."""

    def __init__(self, model_path: str, engine_kwargs: dict[str, Any], ctx: RunContext,
                 adapter_paths: dict[str, str], tally: Any = None, model_source: str | None = None):
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        self.ctx, self.tally = ctx, tally
        self.log = get_logger(run_id=ctx.run_id)
        self.llm = LLM(model=node_model_path(model_source, model_path), **engine_kwargs)
        self.adapter_paths = adapter_paths
        self.loras = {task: LoRARequest(lora_name=task, lora_int_id=i + 1, lora_path=path)
                      for i, (task, path) in enumerate(sorted(adapter_paths.items()))}

    def __call__(self, batch: pa.Table) -> pa.Table:
        return generate_batch(self.llm, self.loras, self.ctx, self.adapter_paths, batch,
                              tally=self.tally, log=self.log)

    def __del__(self):
        # Ray Data drops the pool's handles when the pass ends, and this runs before the actor
        # exits (as ray.data.llm's engine stage does): stop the engine core here rather than
        # leave its teardown to the interpreter's exit.
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()


def generate_batch(llm: Any, loras: dict[str, Any], ctx: RunContext, adapter_paths: dict[str, str],
                   batch: pa.Table, tally: Any = None, log: Any = None) -> pa.Table:
    """One call of an engine: every row of ``batch`` into ``llm`` at once, each finished text
    judged as it comes out, a retry back in at once; every attempt out (``GEN_SCHEMA``). The
    engine actor of a job and the generation service (``pdgen_core.service``) both run this, so a
    job writes the same rows whichever engine it used. ``loras`` maps a task to its
    ``LoRARequest``; ``adapter_paths`` names what each row's lineage records."""
    started = time.monotonic()
    t0: dict[str, float] = {}
    waiting: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    latency: list[float] = []

    def submit(row: dict[str, Any]) -> None:
        try:
            rid = _enqueue(llm, loras, ctx, adapter_paths, row)
        except Exception as exc:  # a per-row engine error (a prompt longer than the context)
            out.append(judge({**row, "engine_error": f"{type(exc).__name__}: {exc}"}, ctx))
            latency.append(-1.0)
            return
        waiting[rid], t0[rid] = row, time.monotonic()

    missing = set(WORK_SCHEMA.names) - set(batch.column_names)
    if missing:  # the stage contract (stages/contract.py): a bug upstream, named
        raise StageError("generate", f"stage generate: its input lacks column(s) {sorted(missing)}")
    for row in batch.select(WORK_SCHEMA.names).to_pylist():
        submit(row)
    engine = llm.llm_engine
    told = Told(tally)
    while engine.has_unfinished_requests():
        for res in engine.step():
            if not res.finished:
                continue
            row = waiting.pop(res.request_id)
            gen = res.outputs[0]
            judged = judge({**row, "generated_text": gen.text, "finish": gen.finish_reason,
                            "num_input_tokens": len(res.prompt_token_ids or ()),
                            "num_generated_tokens": len(gen.token_ids)}, ctx)
            out.append(judged)
            latency.append(time.monotonic() - t0.pop(res.request_id))
            if judged["status"] == "retry":
                submit(next_attempt(judged))
            else:
                told.done(1)
    told.flush()
    table = pa.Table.from_pylist(out, schema=GEN_SCHEMA)
    metrics.record_batch(table.append_column("time_taken_llm", pa.array(latency, pa.float64())))
    status = [r["status"] for r in out]
    (log or get_logger(run_id=ctx.run_id)).info(
        "generate.batch", items=batch.num_rows, accepted=status.count("accepted"),
        rejected=status.count("rejected"), retried=status.count("retry"),
        tokens_out=sum(int(r["tokens_out"] or 0) for r in out),
        seconds=round(time.monotonic() - started, 2))
    return table


def _enqueue(llm: Any, loras: dict[str, Any], ctx: RunContext, adapter_paths: dict[str, str],
             row: dict[str, Any]) -> str:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    req = engine_request(row, ctx, adapter_paths)
    params = dict(req["sampling_params"])
    structured = params.pop("structured_outputs", None)
    sp = SamplingParams(**params, structured_outputs=StructuredOutputsParams(**structured) if structured else None)
    lora = loras.get(row["task"])
    (rid,) = llm.enqueue([req["prompt"]], [sp], lora_request=[lora] if lora else None, use_tqdm=False)
    # enqueue returns the engine's id, "<ours>-<8 random characters>"; outputs carry ours.
    return rid.rsplit("-", 1)[0] if "-" in rid else rid
