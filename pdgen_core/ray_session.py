"""The Ray session: start or join the cluster once per driver, and run a function on every node.

Apart from the pipeline so that the floors below it (``joins``, ``incremental``, the stages) can
ask for the cluster's shuffle parallelism without importing the orchestrator back: that import
closed a six-module circle (``joins -> pipeline -> incremental -> joins``, with the stages).
Ray itself is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import sys

from pdgen_core.log import get_logger, library_log_path, native_stderr_to_library_log, quiet_libraries
from pdgen_core.settings import get_settings


def init_ray() -> None:
    """Join ``RAY_ADDRESS`` (or start Ray in-process) with pdgen's Data settings; once."""
    import ray

    if ray.is_initialized():
        return
    # Only non-secret facts travel in the runtime env; workers inherit credentials from their node.
    # Nor the model cache: it is each node's own (its PDGEN_CACHE_DIR, on its own volume); the
    # driver's would send every node's downloads into one folder. In-process Ray's workers
    # inherit the driver's environment, its cache with it.
    env = {"VLLM_LOGGING_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false"}
    verbose = get_settings().verbose
    quiet_libraries()   # before ray.init: its own notices go to the file too
    native_stderr_to_library_log()   # and Ray's C++ lines (a pdgen command only)
    # Workers' output (vLLM's engine notices, their stdout) reaches the driver only with
    # --verbose; it stays in Ray's session logs (``<temp dir>/session_latest/logs``) either way.
    ray.init(address=get_settings().ray_address, runtime_env={"env_vars": env},
             ignore_reinit_error=True, log_to_driver=verbose, configure_logging=False)
    quiet_libraries()   # Ray Data configures its loggers on import: route them again
    ctx = ray.data.DataContext.get_current()
    # Hash shuffles (duplicate skus, review grouping, joins) default to 200 partitions: 200 tasks
    # per aggregation dominate a small run. Scale with the cluster instead.
    ctx.default_hash_shuffle_parallelism = shuffle_partitions()
    ctx.enable_progress_bars = verbose   # pdgen's own bar counts rows (progress.py)
    # Ray 2.60's Parquet reader V2 lists files and reads footers in nested tasks, each on a fresh
    # worker on a small node: 9 s to read a 40-row file here, against 0.2 s for V1, which
    # reads the footers on the driver (or in tasks, for many files) and pushes predicates and
    # projections into pyarrow the same way (make bench, plan section).
    ctx.use_datasource_v2 = False
    # Ray splits every read into at least 200 blocks (read_op_min_num_blocks), sized for a large
    # cluster: on 2 cores a 1M-row plan then ran 200 read and map tasks per pass, 29 s. Four per
    # CPU (at least 8): 20 s (make bench, plan section: 20.7k -> 40.4k rows/s with content); blocks stay
    # bounded by target_max_block_size, and the UDFs by their batch size.
    ctx.read_op_min_num_blocks = read_blocks()
    ctx.print_on_execution_start = False
    if not verbose:  # where the chatter went, once per driver
        get_logger().info("ray.session", library_log=str(library_log_path()), ray_logs=session_logs(),
                          hint="pdgen --verbose ... shows them on stderr")


def session_logs() -> str | None:
    """This driver's Ray session log folder (workers' and engines' output), where Ray says; None
    when this process has no Ray session."""
    if "ray" not in sys.modules:
        return None
    import ray

    try:
        return str(ray._private.worker.global_worker.node.get_logs_dir_path())
    except Exception:  # a client connection, or a Ray without this attribute
        return None


def read_blocks() -> int:
    """The fewest blocks a read is split into: four per CPU of the cluster, between 8 and 200
    (Ray's default, 200, whatever the cluster)."""
    return max(8, min(200, _cluster_cpus() * 4))


def shuffle_partitions() -> int:
    """Two hash-shuffle partitions per CPU of the cluster, between 2 and 200."""
    return max(2, min(200, _cluster_cpus() * 2))


def _cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 2))


def _to_each_node(fn, args: tuple = (), skip: str | None = None) -> dict[str, object]:
    """``fn(*args)`` sent as a zero-CPU task pinned (NodeAffinity, ``soft=False``) to every alive
    node but ``skip``; the object refs by node id."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=0)(lambda f, a: f(*a))
    return {n["NodeID"]: remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(fn, args) for n in ray.nodes() if n.get("Alive") and n["NodeID"] != skip}


def on_every_node(fn):
    """Run ``fn`` (which caches into the node-local cache) on every alive Ray node; return the
    local result. Downloads of models and adapters happen once per node this way."""
    import ray

    gather_alive(_to_each_node(fn, skip=ray.get_runtime_context().get_node_id()))
    return fn()


def gather_alive(refs: dict[str, object]) -> dict[str, object]:
    """The results of per-node tasks (NodeAffinity, ``soft=False``) by node id, leaving out a node
    that died after ``ray.nodes()`` listed it: the GCS marks a lost node dead only once its
    heartbeats time out (as after a worker node's SIGKILL), and a task sent to it raises
    ``TaskUnschedulableError``. Such a node runs nothing of this job, so it needs nothing; the
    same error from a node still alive is raised."""
    import ray

    out: dict[str, object] = {}
    for node, ref in refs.items():
        try:
            out[node] = ray.get(ref)
        except ray.exceptions.TaskUnschedulableError:
            if any(n["NodeID"] == node and n.get("Alive") for n in ray.nodes()):
                raise
    return out


def on_each_node(fn, *args, timeout_s: float | None = None) -> dict[str, object]:
    """``fn(*args)`` in a zero-CPU task on every alive Ray node, the driver's too (a task, not
    the driver itself: it sees the node's environment as the node's workers do); the results by
    node id. TimeoutError names the nodes that did not answer within ``timeout_s``."""
    import ray

    refs = _to_each_node(fn, args)
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    late = [n for n, r in refs.items() if r not in ready]
    if late:
        for r in refs.values():
            ray.cancel(r, force=True)
        raise TimeoutError(f"node(s) {', '.join(late)} did not answer within {timeout_s:.0f}s")
    return gather_alive(refs)  # a node lost since ray.nodes(): nothing of this job runs there
