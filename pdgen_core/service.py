"""The generation service: a Ray Serve application whose replicas each hold one vLLM engine that
outlives jobs, so that frequent refreshes pay the engine start once (issue 23), not once a job.

- ``pdgen service start SPEC`` deploys it on the cluster at ``RAY_ADDRESS`` for the spec's model
  and engine settings (LoRA always on, so that any job's adapters can ride on it);
  ``pdgen service status`` and ``pdgen service stop`` are the other two commands.
- A job looks for it when it starts generating (``find``): a service that is up and serves the
  job's model, context, LoRA rank and JSON decoding takes the job's batches; otherwise the job
  starts its own engine actors, as always, and its log says why (``generation.engine``).
- A replica runs the same engine call as a job's actor (``stages.generate.generate_batch``):
  every row's own sampling parameters (seed, temperature, a retry's penalty), its task's LoRA
  request, the guard and its retries inside the engine. The run context and adapter folders
  travel with each batch, so one replica serves any number of jobs, one batch at a time.

The engine's settings are what a job's actor would get from the same spec
(``stages.generate.engine_kwargs``); ``ray.data.llm``'s shared-engine stage was not used because
its LoRA support was a TODO and its rows carry no per-row guard loop.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from pdgen_core.log import get_logger
from pdgen_core.models.resolve import ensure_on_all_nodes
from pdgen_core.run_context import RunContext
from pdgen_core.settings import get_settings
from pdgen_core.spec import JobSpec
from pdgen_core.stages import generate

APP = "pdgen-engine"          # the Serve application (one per cluster)
DEPLOYMENT = "EngineService"


class EngineService:
    """One replica: a vLLM engine for the service's model, LoRA adapters loaded as batches name
    them (one LoRA id per adapter folder, for the replica's life)."""

    def __init__(self, model_path: str, engine_kwargs: dict[str, Any], info: dict[str, Any],
                 model_source: str | None = None):
        from vllm import LLM

        # This node's own copy of a fetched or converted model (its cache, filled by ``start``),
        # not the driver's folder, which is on another node (issue 22).
        self.llm = LLM(model=generate.node_model_path(model_source, model_path), **engine_kwargs)
        self.info = {**info, "started_at": dt.datetime.now(dt.timezone.utc).isoformat()}
        self.lora_ids: dict[str, int] = {}
        self.batches = self.rows = 0
        self.runs: list[str] = []
        self.log = get_logger(service=APP)

    def describe(self) -> dict[str, Any]:
        import os

        return {**self.info, "batches": self.batches, "rows": self.rows, "runs": list(self.runs),
                "pid": os.getpid()}

    def generate(self, batch: pa.Table, ctx: RunContext, adapter_paths: dict[str, str],
                 tally: Any = None) -> pa.Table:
        from vllm.lora.request import LoRARequest

        loras = {}
        for task, path in sorted(adapter_paths.items()):
            lid = self.lora_ids.setdefault(path, len(self.lora_ids) + 1)
            loras[task] = LoRARequest(lora_name=f"{task}-{lid}", lora_int_id=lid, lora_path=path)
        out = generate.generate_batch(self.llm, loras, ctx, adapter_paths, batch, tally=tally,
                                      log=self.log.bind(run_id=ctx.run_id))
        self.batches, self.rows = self.batches + 1, self.rows + batch.num_rows
        if ctx.run_id not in self.runs:
            self.runs = (self.runs + [ctx.run_id])[-20:]
        return out


def service_settings(spec: JobSpec, model_path: Path, model_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine arguments and the description (what ``find`` matches jobs against) of a
    service for ``spec``'s model: a job's engine settings with LoRA on."""
    kw = generate.engine_kwargs(spec, enable_lora=True, model_path=model_path)
    kw["max_loras"] = max(kw.get("max_loras", 1), 4)
    # JSON tasks decode with guided JSON: a service started by a spec without one still serves them
    kw.setdefault("structured_outputs_config", {"backend": "xgrammar", "disable_any_whitespace": True})
    info = {"model": model_id, "model_source": spec.model.source, "max_model_len": kw["max_model_len"],
            "max_lora_rank": kw["max_lora_rank"], "json": True,
            "replicas": spec.resources.replicas, "cpus_per_replica": spec.resources.cpus_per_replica,
            "gpus_per_replica": spec.resources.gpus_per_replica}
    return kw, info


def start(spec: JobSpec, model_path: Path, model_id: str, wait_s: float = 900,
          num_cpus: float | None = None) -> dict[str, Any]:
    """Deploy (or redeploy) the service for ``spec``'s model on the connected cluster; returns
    its description once every replica's engine is up.

    Each replica reserves ``cpus_per_replica`` CPUs, or ``num_cpus``: the test suite's session
    service reserves none, so that the jobs it does not serve keep the two CPUs of its Ray (an
    idle engine uses none; the suite runs one job at a time)."""
    from ray import serve

    kw, info = service_settings(spec, model_path, model_id)
    ensure_on_all_nodes(spec.model.source)  # each node's cache, before any replica starts
    res = spec.resources
    cpus = res.cpus_per_replica if num_cpus is None else num_cpus
    opts: dict[str, Any] = {"num_cpus": cpus, "num_gpus": 1 if res.gpus_per_replica else 0}
    threads = generate.engine_threads(spec)
    if threads is not None:
        opts["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": str(threads), "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}}
    dep = serve.deployment(EngineService, name=DEPLOYMENT, num_replicas=res.replicas,
                           max_ongoing_requests=1,  # one engine loop at a time per replica
                           ray_actor_options=opts, health_check_period_s=30, health_check_timeout_s=120,
                           graceful_shutdown_timeout_s=5)
    serve.start(http_options={"location": "NoServer"})  # handles only: no HTTP proxy to expose
    serve.run(dep.bind(str(model_path), kw, info, spec.model.source), name=APP, route_prefix=None, blocking=False)
    deadline = time.monotonic() + wait_s
    while True:
        st = status()
        if st["status"] == "RUNNING":
            return st
        if st["status"] in ("DEPLOY_FAILED", "UNHEALTHY") or time.monotonic() > deadline:
            raise RuntimeError(f"the generation service did not start ({st['status']}): {st.get('message', '')}")
        time.sleep(2)


def _serve_is_up() -> bool:
    """Whether Serve's controller runs on the connected cluster, asked without importing Serve
    (2-3 s a job on two cores) or starting it."""
    import ray

    return any(a.get("name") == "SERVE_CONTROLLER_ACTOR" and a.get("namespace") == "serve"
               for a in ray.util.list_named_actors(all_namespaces=True))


def status() -> dict[str, Any]:
    """The service's state on the connected cluster: ``NOT_RUNNING``, or Serve's application status
    with each replica's description (model, engine settings, batches and rows served)."""
    if not _serve_is_up():
        return {"status": "NOT_RUNNING", "message": "Serve is not running on this cluster"}
    from ray import serve

    try:
        apps = serve.status().applications
    except Exception as exc:  # no Serve on this cluster
        return {"status": "NOT_RUNNING", "message": str(exc).splitlines()[0][:200] if str(exc) else ""}
    app = apps.get(APP)
    if app is None:
        return {"status": "NOT_RUNNING", "message": "no pdgen-engine application on this cluster"}
    out: dict[str, Any] = {"status": str(app.status.value if hasattr(app.status, "value") else app.status),
                           "message": app.message or ""}
    if out["status"] == "RUNNING":
        out.update(serve.get_app_handle(APP).describe.remote().result(timeout_s=60))
    return out


def stop() -> bool:
    """Delete the service's application; True when there was one."""
    from ray import serve

    if status()["status"] == "NOT_RUNNING":
        return False
    serve.delete(APP)
    return True


def mismatch(info: dict[str, Any], spec: JobSpec, model_id: str, engine_kwargs: dict[str, Any]) -> str | None:
    """Why a running service cannot take this job's batches (None: it can)."""
    if info.get("model") != model_id:
        return f"it serves {info.get('model')}, the job wants {model_id}"
    if int(info.get("max_model_len") or 0) < int(engine_kwargs["max_model_len"]):
        return f"its context ({info.get('max_model_len')}) is shorter than the job's ({engine_kwargs['max_model_len']})"
    if engine_kwargs.get("enable_lora") and int(info.get("max_lora_rank") or 0) < int(engine_kwargs["max_lora_rank"]):
        return f"its LoRA rank limit ({info.get('max_lora_rank')}) is below the job's ({engine_kwargs['max_lora_rank']})"
    if "structured_outputs_config" in engine_kwargs and not info.get("json"):
        return "it has no guided JSON decoding, which the job's JSON tasks need"
    return None


def find(spec: JobSpec, model_id: str, engine_kwargs: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The running service's description when it can serve this job, else None; and why."""
    if get_settings().engine_service == "off":
        return None, "PDGEN_ENGINE_SERVICE=off"
    st = status()
    if st["status"] != "RUNNING":
        return None, f"no service up ({st['status']})"
    why = mismatch(st, spec, model_id, engine_kwargs)
    return (None, why) if why else (st, "the service serves this job's model and settings")


class ServiceClient:
    """A Ray Data actor of no CPU that hands each batch to the service and returns its rows (the
    same rows a job's own engine actor writes)."""

    def __init__(self, ctx: RunContext, adapter_paths: dict[str, str], tally: Any = None):
        from ray import serve

        self.handle = serve.get_app_handle(APP)
        self.ctx, self.adapter_paths, self.tally = ctx, adapter_paths, tally

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.handle.generate.remote(batch, self.ctx, self.adapter_paths, self.tally).result()


def build(spec: JobSpec, ctx: RunContext, adapter_paths: dict[str, str] | None, tally: Any,
          replicas: int):
    """The generate stage through the service: as many clients as it has replicas."""

    def apply(ds):
        return ds.map_batches(ServiceClient, fn_constructor_kwargs={
            "ctx": ctx, "adapter_paths": dict(adapter_paths or {}), "tally": tally},
            batch_format="pyarrow", concurrency=max(1, replicas), num_cpus=0,
            batch_size=generate.rows_per_call(spec), max_restarts=2, max_task_retries=2)
    return apply
