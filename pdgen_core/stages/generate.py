"""Generate: ``ray.data.llm`` processor with one vLLM engine per actor.

This is the one place where scheduling knobs from the spec (replicas, batch size, GPUs and CPUs
per replica) reach Ray: ``processor_config``. Per-row engine errors come back in
``__inference_error__`` (``should_continue_on_error``) and become rejects in the guard stage; a
dead engine raises ``EngineError``.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from pdgen_core.errors import StageError
from pdgen_core.spec import JobSpec
from pdgen_core.run_context import RunContext
from pdgen_core.stages.prompt import engine_request
from pdgen_core.tasks import TASKS


class EngineError(StageError):
    """The vLLM engine could not start or died; the job fails with this message."""

    def __init__(self, message: str):
        super().__init__("generate", message)

    def __reduce__(self):
        return type(self), (self.message,)


def max_num_seqs(spec: JobSpec) -> int:
    res = spec.resources
    return max(16, min(256, res.batch_size * res.max_concurrent_batches // 2))


def max_pending_requests(spec: JobSpec) -> int:
    """Requests the actor lets into the engine at once: twice what it runs, so that the scheduler
    always has requests waiting when sequences finish (as plain ``LLM.generate``, which queues
    every prompt up front, does). Ray's default, 1.1x, left the engine refilling its batch from
    the actor's event loop each time a wave of sequences finished together."""
    res, running = spec.resources, max_num_seqs(spec)
    return max(running, min(2 * running, res.batch_size * res.max_concurrent_batches))


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
        # Sequences the engine runs at once. ray.data.llm admits about 1.1x this many requests and
        # holds batch_size x max_concurrent_batches rows in the actor: keep twice as many rows in
        # flight as the engine runs, so that while one batch drains the next is already queued.
        # (Measured, make bench: batches of 256 two at a time left the engine half fed between
        # batches, 0.45 of plain vLLM's rate; four at a time matched it.)
        "max_num_seqs": max_num_seqs(spec),
        # Plain vllm.LLM runs with stats off; ray.data.llm's AsyncLLM keeps vLLM's serving default
        # (on): per-step scheduler stats in the engine core and per-token stats in the actor's
        # output handler, 3.3 s of its 10 s of output processing at 2,000 pdgen-tiny rows (py-spy).
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
        # The worker runs inside the engine-core process (vLLM's default on the CPU is a third
        # process that spins on a shared-memory queue): one process fewer to start (about 7 s of
        # engine start here) and no spinning beside Ray's own work. vLLM keeps the multiprocess
        # executor whenever VLLM_ENABLE_V1_MULTIPROCESSING is 1; set_engine_threads clears it for
        # the engine actors (AsyncLLM still runs the engine core in its own process).
        kw["distributed_executor_backend"] = "uni"
    else:
        kw.update(tensor_parallel_size=res.gpus_per_replica,
                  gpu_memory_utilization=res.memory_fraction or 0.9)
    if any(TASKS[t].output == "json" for t in spec.tasks):
        # Guided decoding for JSON tasks; without disable_any_whitespace a weak model spends its
        # whole token budget on JSON whitespace (README, "Notes from building it").
        kw["structured_outputs_config"] = {"backend": "xgrammar", "disable_any_whitespace": True}
    if enable_lora:
        kw.update(enable_lora=True, max_lora_rank=res.max_lora_rank, max_loras=max(1, len(spec.tasks)))
    return kw


def processor_config(spec: JobSpec, model_path: Path, enable_lora: bool = False):
    from ray.data.llm import vLLMEngineProcessorConfig

    res = spec.resources
    if res.gpus_per_replica:
        bundles = [{"GPU": 1, "CPU": res.cpus_per_replica}] + [{"GPU": 1}] * (res.gpus_per_replica - 1)
    else:
        bundles = [{"CPU": res.cpus_per_replica}]
    return vLLMEngineProcessorConfig(
        model_source=str(model_path),
        engine_kwargs=engine_kwargs(spec, enable_lora, model_path),
        batch_size=res.batch_size,
        concurrency=res.replicas,
        max_concurrent_batches=res.max_concurrent_batches,
        max_pending_requests=max_pending_requests(spec),
        placement_group_config={"bundles": bundles, "strategy": "PACK"},
        # Prompts are rendered by our own templates; the engine tokenizes and detokenizes.
        chat_template_stage=False,
        tokenize_stage=False,
        detokenize_stage=False,
        should_continue_on_error=True,
        log_engine_metrics=False,
    )


def _keep_all(row: dict[str, Any]) -> dict[str, Any]:
    # Error rows bypass postprocess and keep every column, so success rows must keep them too:
    # one schema for both.
    return row


def build(spec: JobSpec, ctx: RunContext, model_path: Path, adapter_names: dict[str, str] | None = None):
    """The processor: work items in, the same rows plus ``generated_text`` and token counts out."""
    from ray.data.llm import build_processor

    adapter_names = adapter_names or {}
    proc = build_processor(
        processor_config(spec, model_path, enable_lora=bool(adapter_names)),
        preprocess=partial(engine_request, ctx=ctx, adapter_names=adapter_names),
        postprocess=_keep_all,
    )
    bound_engine_restarts(proc, spec.resources.max_engine_restarts)
    set_engine_threads(proc, engine_threads(spec))
    return proc


def engine_threads(spec: JobSpec) -> int | None:
    """Torch threads for a CPU engine (``resources.engine_threads``, else ``cpus_per_replica``),
    or None on GPUs (vLLM's own choice stands)."""
    res = spec.resources
    if res.gpus_per_replica:
        return None
    return res.engine_threads or res.cpus_per_replica


def set_engine_threads(proc, threads: int | None) -> None:
    """CPU engines: the in-process worker (``distributed_executor_backend="uni"``) and its thread
    count, set in the engine actors' environment.

    vLLM's default CPU executor pins its worker's threads itself (every core but one, which it
    keeps for the scheduler: one core of this machine's two) whatever OMP_NUM_THREADS says, so
    an earlier ``engine_threads: 2`` here changed nothing. With the in-process worker vLLM binds
    nothing and torch takes OMP_NUM_THREADS: the reservation, or ``engine_threads``."""
    if threads is None:
        return
    for stage in proc.stages.values():
        if type(stage).__name__ == "vLLMEngineStage":
            env = dict(stage.map_batches_kwargs.get("runtime_env") or {})
            env["env_vars"] = {**env.get("env_vars", {}), "OMP_NUM_THREADS": str(threads),
                               "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
            stage.map_batches_kwargs["runtime_env"] = env


def bound_engine_restarts(proc, restarts: int) -> None:
    """A dead engine exits its actor so that Ray starts a new one (vllm_engine_stage.py), and Ray
    Data's default is to do so forever (``max_restarts=-1``): an engine that dies deterministically
    would loop without end. Bound it: a killed worker is replaced ``restarts`` times, then the job
    fails. (An engine that never starts fails the job at once: Ray Data's
    ``max_consecutive_actor_init_deaths`` is 0 by default.)"""
    for stage in proc.stages.values():
        if type(stage).__name__ == "vLLMEngineStage":
            stage.map_batches_kwargs.update(max_restarts=restarts, max_task_retries=restarts)
