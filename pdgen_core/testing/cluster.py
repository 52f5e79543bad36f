"""A multi-node Ray cluster on one machine: a head and worker nodes, each its own ``ray start``.

Why separate ``ray start`` processes and not ``ray.cluster_utils.Cluster``: that helper starts
every node from the calling process, with the caller's environment. A node of a real cluster
(a KubeRay pod) has an environment of its own: its S3 endpoint and credentials from a Secret, its
model cache on its own volume. Here each node is started with the environment it would have, so
that a worker node without credentials, or with a cache of its own, is what the job meets.

Layout, as a real cluster is laid out:

- the head: ``--num-cpus=0``, so no engine, train worker or Ray Data task runs there (KubeRay's
  advice for heads); the Jobs API, the dashboard and the job drivers live on it;
- each worker node: its own temp dir (``<root>/<name>``), ports, ``PDGEN_CACHE_DIR`` and CPUs,
  and a custom resource ``pdgen_node_<name>`` that names it in Ray's state API.

Every process a node starts is a descendant of its ``ray start --block`` process (raylet,
agents, workers) or names the node's private temp dir: ``kill()`` (SIGKILL, a lost node) and
``stop()`` end exactly those, never ``ray stop``, which would end every Ray on a shared machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pdgen_core.testing.child import Child, free_ports

BIN = Path(sys.executable).parent  # the venv's bin/: `ray`, and the `python` its workers run
OBJECT_STORE_BYTES = 500_000_000  # per node: three nodes share this machine's memory
# What a node needs to reach S3. Which of them a worker node must have is decided in preflight
# (pdgen_core.preflight.check_nodes); a node started ``without_s3`` lacks them all.
# A raylet waits only seconds for its dashboard agent (a Python process) to write its port file,
# then aborts ("Timed out waiting for file .../dashboard_agent_listen_port_..."): on this 2-core
# machine under other sessions' load the agent's imports take longer. Two minutes, as a pod's
# start-up probe would allow.
SLOW_START = {"RAY_agent_register_timeout_ms": "120000"}
S3_VARS = ("PDGEN_S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
           "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PDGEN_AWS_ACCESS_KEY_ID",
           "PDGEN_AWS_SECRET_ACCESS_KEY", "PDGEN_AWS_SESSION_TOKEN")


def _processes(marker: str, root_pid: int | None = None) -> list:
    """Live processes that belong to a node: descendants of ``root_pid`` (its ``ray start``), and
    any whose command line or working dir names ``marker`` (its private temp dir). The working
    dir catches job drivers: Ray starts them in their own session, inside the job's unpacked
    working_dir, with a command line that names neither."""
    import psutil

    out: dict[int, psutil.Process] = {}
    if root_pid is not None:
        try:
            root = psutil.Process(root_pid)
            for p in [root, *root.children(recursive=True)]:
                out[p.pid] = p
        except psutil.NoSuchProcess:
            pass
    for p in psutil.process_iter(["cmdline", "status", "cwd"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if (p.info["cwd"] or "").startswith(marker) or any(marker in a for a in p.info["cmdline"] or []):
                out[p.pid] = p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return [p for p in out.values() if _alive(p)]


def leftovers(marker: str | Path) -> list[int]:
    """PIDs of live processes that name ``marker`` (a cluster's root folder): none once it stopped."""
    return [p.pid for p in _processes(str(marker))]


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal_all(procs: list, sig: int) -> None:
    for p in procs:
        try:
            p.send_signal(sig)
        except Exception:  # gone already
            pass


class RayNode:
    """One ``ray start --block`` in its own session, with a private temp dir and free ports."""

    role = "node"

    def __init__(self, temp: Path, env: dict[str, str], num_cpus: int, resources: dict[str, float] | None = None,
                 extra_ports: int = 0):
        self.temp, self.env, self.num_cpus = temp, env, num_cpus
        self.resources = dict(resources or {})
        ports = free_ports(6 + extra_ports)  # all at once, so no two are the same
        (self.agent, self.agent_grpc, self.metrics, self.renv, self.nm, self.om) = ports[:6]
        self.extra_ports = ports[6:]
        self.proc: subprocess.Popen | None = None
        self._log = None

    def argv(self) -> list[str]:
        args = [str(BIN / "ray"), "start", "--block", f"--num-cpus={self.num_cpus}",
                "--node-ip-address=127.0.0.1", f"--dashboard-agent-listen-port={self.agent}",
                f"--dashboard-agent-grpc-port={self.agent_grpc}", f"--metrics-export-port={self.metrics}",
                f"--runtime-env-agent-port={self.renv}", f"--node-manager-port={self.nm}",
                f"--object-manager-port={self.om}", f"--object-store-memory={OBJECT_STORE_BYTES}",
                f"--temp-dir={self.temp}", "--disable-usage-stats"]
        if self.resources:
            args.append(f"--resources={json.dumps(self.resources)}")
        return args

    def spawn(self, ready, timeout_s: float, what: str) -> None:
        """Start the node; return once ``ready()`` stops raising. On failure the node is left for
        ``stop()``, which also ends the processes it started."""
        self.temp.mkdir(parents=True, exist_ok=True)
        self._log = open(self.temp.parent / f"{self.temp.name}-ray-start.log", "w")
        child = Child(self.argv(), env={**SLOW_START, **self.env}, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            child.start(ready, timeout=timeout_s, poll_s=1,
                        errors=(ConnectionError, RuntimeError, OSError, LookupError), stop_on_failure=False,
                        failure=lambda: f"{what} did not come up:\n" + self.start_log()[-3000:])
        finally:
            self.proc = child.proc

    def started(self) -> None:
        """Raises LookupError until ``ray start`` says the node is up: its raylet registered with
        the GCS within Ray's 30 s (it gives up after that, under load: see ``start``)."""
        if "Ray runtime started" not in self.start_log():
            raise LookupError(f"{self.temp.name}: ray start has not finished")

    def start_log(self) -> str:
        try:
            return (self.temp.parent / f"{self.temp.name}-ray-start.log").read_text()
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The live processes of this node (its raylet, agents and workers among them)."""
        return [p.pid for p in _processes(str(self.temp), self.proc.pid if self.proc else None)]

    def kill(self) -> list[int]:
        """SIGKILL the whole node at once, as a machine that dies: no raylet says goodbye to the
        GCS. Returns the PIDs killed."""
        procs = _processes(str(self.temp), self.proc.pid if self.proc else None)
        _signal_all(procs, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        return [p.pid for p in procs]

    def stop(self) -> list[int]:
        """SIGTERM, a grace period, then SIGKILL: the group, plus any of ours that left it.
        Returns the PIDs still alive afterwards (should be none)."""
        if self.proc is None:
            return []
        marker, root = str(self.temp), self.proc.pid
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 15)):
            procs = _processes(marker, root)
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            _signal_all(procs, sig)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            deadline = time.monotonic() + grace
            while _processes(marker) and time.monotonic() < deadline:
                time.sleep(0.5)
            if not _processes(marker):
                break
        for _ in range(3):  # stragglers: a process being spawned while the node went down
            time.sleep(1)
            stragglers = _processes(marker)
            if not stragglers:
                break
            _signal_all(stragglers, signal.SIGKILL)
        if self._log:
            self._log.close()
        return [p.pid for p in _processes(marker)]


class RayHead(RayNode):
    """The head: GCS, dashboard and Jobs API on free ports of 127.0.0.1."""

    role = "head"

    def __init__(self, temp: Path, env: dict[str, str], num_cpus: int = 2,
                 resources: dict[str, float] | None = None):
        super().__init__(temp, env, num_cpus, resources, extra_ports=3)
        self.gcs, self.dash, self.client = self.extra_ports

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dash}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs}"

    def argv(self) -> list[str]:
        return [*super().argv(), "--head", f"--port={self.gcs}", "--include-dashboard=true",
                "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dash}",
                f"--ray-client-server-port={self.client}"]

    def start(self, timeout_s: float = 180) -> str:
        from pdgen_core import jobs_api

        def ready():
            self.started()
            jobs_api.list_jobs(self.url)  # the Jobs API answers

        _with_retry(self, lambda: self.spawn(ready, timeout_s, "Ray head"))
        return self.url


class WorkerNode(RayNode):
    """A worker node joining ``head``; ``name`` is also its custom resource ``pdgen_node_<name>``."""

    role = "worker"

    def __init__(self, name: str, head: RayHead, temp: Path, env: dict[str, str], num_cpus: int = 2):
        super().__init__(temp, env, num_cpus, {node_resource(name): 1})
        self.name, self.head = name, head

    def argv(self) -> list[str]:
        return [*super().argv(), f"--address={self.head.address}"]

    def start(self, timeout_s: float = 180) -> str:
        """Returns the node's Ray node id, once the head's state API lists it ALIVE."""
        def ready():
            self.started()
            node_id(self.head.url, self.name)

        _with_retry(self, lambda: self.spawn(ready, timeout_s, f"Ray worker node {self.name}"))
        return node_id(self.head.url, self.name)


START_TRIES = 6


def _with_retry(node: RayNode, spawn) -> None:
    """``spawn()``, again after a node that gave up: Ray waits only 30 s for a new raylet to
    register, which a GCS on a loaded machine can miss ("The current node timed out during
    startup"); KubeRay restarts such a pod, and so does this."""
    for attempt in range(1, START_TRIES + 1):
        try:
            return spawn()
        except RuntimeError as exc:
            gave_up = "timed out during startup" in str(exc)
            left = node.stop()
            if not gave_up or attempt == START_TRIES or left:
                raise
            node.proc = None
            time.sleep(5 * attempt)  # a GCS too busy to answer now may answer in a while


def node_resource(name: str) -> str:
    return f"pdgen_node_{name}"


def alive_nodes(url: str) -> list:
    from ray.util.state import list_nodes

    return list_nodes(address=url, filters=[("state", "=", "ALIVE")], limit=100, raise_on_missing_output=False)


def node_id(url: str, name: str) -> str:
    """The node id of the ALIVE worker node called ``name``; LookupError while it has not joined."""
    for n in alive_nodes(url):
        if node_resource(name) in (n.resources_total or {}):
            return n.node_id
    raise LookupError(f"no ALIVE node with resource {node_resource(name)} yet")


@dataclass
class LocalCluster:
    """A head (0 CPUs) and worker nodes, each with its own environment, temp dir and cache.

    ``env`` is every node's environment; ``worker_env`` maps a worker's name to changes of its
    own (a value of None removes the variable). Each worker's ``PDGEN_CACHE_DIR`` is
    ``<caches>/<name>`` unless ``worker_env`` sets it."""

    root: Path
    env: dict[str, str]
    workers: tuple[str, ...] = ("w1", "w2")
    worker_cpus: int = 2
    caches: Path | None = None
    worker_env: dict[str, dict[str, str | None]] = field(default_factory=dict)
    head: RayHead | None = None
    nodes: dict[str, WorkerNode] = field(default_factory=dict)
    node_ids: dict[str, str] = field(default_factory=dict)

    def env_of(self, name: str) -> dict[str, str]:
        env = dict(self.env)
        if self.caches is not None:
            env["PDGEN_CACHE_DIR"] = str(self.caches / name)
        for k, v in self.worker_env.get(name, {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def cache_of(self, name: str) -> Path:
        return Path(self.env_of(name)["PDGEN_CACHE_DIR"])

    def start(self, timeout_s: float = 240) -> str:
        """Head first, then the workers; returns the head's dashboard URL."""
        self.head = RayHead(self.root / "h", self.env, num_cpus=0)
        self.head.start(timeout_s)
        self.nodes = {n: WorkerNode(n, self.head, self.root / n, self.env_of(n), self.worker_cpus)
                      for n in self.workers}
        # One at a time: nodes registering together overload a GCS on a busy machine.
        self.node_ids = {n: w.start(timeout_s) for n, w in self.nodes.items()}
        return self.head.url

    @property
    def url(self) -> str:
        assert self.head is not None
        return self.head.url

    def name_of(self, node: str) -> str | None:
        """The worker name of a Ray node id (None for the head or a stranger)."""
        return next((n for n, i in self.node_ids.items() if i == node), None)

    def stop(self) -> list[int]:
        """Workers first (their raylets would otherwise wait for a head that is gone), then the
        head; returns the PIDs still alive (should be none)."""
        left: list[int] = []
        for w in self.nodes.values():
            left += w.stop()
        if self.head is not None:
            left += self.head.stop()
        return left


def engine_actors(url: str, state: str | None = None) -> list:
    """The vLLM engine actors Ray's state API knows of (alive and dead), with their node ids."""
    from ray.util.state import list_actors

    filters = [("state", "=", state)] if state else None
    return [a for a in list_actors(address=url, filters=filters, limit=10000, detail=True,
                                   raise_on_missing_output=False)
            if "EngineActor" in (a.class_name or "") + (a.repr_name or "")]
