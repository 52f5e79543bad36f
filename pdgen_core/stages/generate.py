"""Generate: ``ray.data.llm`` processor with one vLLM engine per actor.

This is the one place where scheduling knobs from the spec (replicas, batch size, GPUs and CPUs
per replica) reach Ray: ``processor_config``. Per-row engine errors come back in
``__inference_error__`` (``should_continue_on_error``) and become rejects in the guard stage; a
dead engine raises ``EngineError``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from pdgen_core.spec import JobSpec
from pdgen_core.stages.plan import RunContext
from pdgen_core.stages.prompt import engine_request
from pdgen_core.tasks import TASKS


class EngineError(RuntimeError):
    """The vLLM engine could not start or died; the job fails with this message."""


def engine_kwargs(spec: JobSpec, enable_lora: bool) -> dict[str, Any]:
    res = spec.resources
    kw: dict[str, Any] = {
        "max_model_len": spec.model.max_model_len,
        "enable_prefix_caching": True,
        "max_num_seqs": max(16, min(256, res.batch_size)),
    }
    if res.gpus_per_replica == 0:
        # vLLM's CPU backend: eager mode, fp32 for tiny models, and a bounded share of host memory
        # (the default 0.92 of a NUMA node fails when other processes hold memory).
        kw.update(enforce_eager=True, dtype="float32", gpu_memory_utilization=res.memory_fraction or 0.1)
        # Chunked prefill discards the token sampled for a partial prompt and rewinds the request's
        # generator, which CPU generators refuse ("CPU Generator does not use offset") when a
        # request carries a seed, as ours all do. Whole-prompt prefills avoid that path.
        kw.update(enable_chunked_prefill=False,
                  max_num_batched_tokens=max(spec.model.max_model_len, 8192))
    else:
        kw.update(tensor_parallel_size=res.gpus_per_replica,
                  gpu_memory_utilization=res.memory_fraction or 0.9)
    if any(TASKS[t].output == "json" for t in spec.tasks):
        # Guided decoding for JSON tasks; without disable_any_whitespace a weak model spends its
        # whole token budget on JSON whitespace (DESIGN.md).
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
        engine_kwargs=engine_kwargs(spec, enable_lora),
        batch_size=res.batch_size,
        concurrency=res.replicas,
        max_concurrent_batches=res.max_concurrent_batches,
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
    or None on GPUs (vLLM's own choice stands).

    Measured here (make bench, 2000 rows): giving the engine both cores of this 2-core machine
    instead of its one reserved CPU did not change pdgen's throughput (783 against 758 output
    tokens/s): the engine then competes with Ray Data's own stages. So the default stays the
    reservation, and a machine with idle cores can raise it.
    """
    res = spec.resources
    if res.gpus_per_replica:
        return None
    return res.engine_threads or res.cpus_per_replica


def set_engine_threads(proc, threads: int | None) -> None:
    """Ray starts each actor with OMP_NUM_THREADS equal to its CPU reservation (1 by default),
    and vLLM's CPU backend respects an OMP_NUM_THREADS it finds: the engine ran on one core of
    two (the benchmark showed half of plain vLLM's speed). Set it for the engine actors."""
    if threads is None:
        return
    for stage in proc.stages.values():
        if type(stage).__name__ == "vLLMEngineStage":
            env = dict(stage.map_batches_kwargs.get("runtime_env") or {})
            env["env_vars"] = {**env.get("env_vars", {}), "OMP_NUM_THREADS": str(threads)}
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
