"""More than one Ray node (issue 22): real ``ray start`` nodes on this machine, each with its own
environment and model cache (``pdgen_core.testing.cluster``), jobs run by ``pdgen run`` joining
the cluster at ``RAY_ADDRESS`` (its driver attaches to the head, as a Jobs API driver does).

- A worker node started without the S3 variables stops the job in preflight, before any work:
  the message names the node and the variables to set, and nothing is written (``make test``).
- A worker node lost mid-run (SIGKILL of its raylet, agents and workers at once): the job
  completes on the remaining node or fails with a clear message; ``--resume`` then commits it
  exactly once, with 0 rows lost or duplicated (``make chaos``: marked ``chaos``).

``make local-ray`` (tests/test_local_ray.py) is the third: replicas spread over two worker nodes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pdgen_core import storage
from pdgen_core.synth import make_catalog
from pdgen_core.testing import chaos
from pdgen_core.testing.cluster import S3_VARS, LocalCluster, alive_nodes, engine_actors, leftovers
from pdgen_core.testing.s3server import TEST_SECRET
from pdgen_core.tools.local_ray import head_env

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = {"sku": "product_id", "title": "product_name", "price": "price_usd", "brand": "brand",
           "category": "category", "color": "color"}


def cluster(s3, root: Path, workers: tuple[str, ...], **kw) -> LocalCluster:
    """Every node with the S3 endpoint and credentials in its own environment (as from a
    Secret), each worker's model cache its own, persistent beside the tests' cache."""
    caches = Path(os.environ["PDGEN_CACHE_DIR"]) / "nodes"
    return LocalCluster(root, head_env(s3.env, ROOT), workers=workers, caches=caches, **kw)


def spec_for(catalog: str, out: str, **resources) -> dict:
    return {"name": "multinode", "catalog": {"uri": catalog, "columns": COLUMNS},
            "tasks": ["description"], "model": {"source": "pdgen-tiny"}, "output": {"uri": out},
            "mode": "full", "sampling": {"max_tokens": 32}, "guardrails": {"min_chars": 1, "max_attempts": 1},
            "resources": {"batch_size": 8, "max_concurrent_batches": 1, **resources}}


def write_catalog(s3, bucket: str, rows: int):
    s3.create_bucket(bucket)
    t = make_catalog(rows, seed=23, bad_rows=3)
    loc = storage.resolve(f"s3://{bucket}/catalog/c.parquet")
    pq.write_table(t, loc.path, filesystem=loc.fs)
    return t, loc.uri


def pdgen(spec: dict, address: str, *args: str, work: Path, timeout: float = 900,
          env: dict | None = None) -> subprocess.Popen:
    """``pdgen run SPEC ARGS`` joining the cluster at ``address`` (its stdout/stderr in ``work``)."""
    path = work / f"spec-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    full = {**os.environ, "RAY_ADDRESS": address, "PDGEN_LOG_JSON": "1", **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), full.get("PYTHONPATH", "")) if p)
    return subprocess.Popen([sys.executable, "-m", "pdgen_core.cli", "run", str(path), *args], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=60)
        return -9, out + err + f"\n[killed after {timeout}s]"
    return proc.returncode, out + err


@pytest.fixture
def work():
    """A private folder for the cluster's temp dirs, specs and logs; removed afterwards unless a
    process of ours still names it."""
    d = Path(tempfile.mkdtemp(prefix="pdmn-", dir="/tmp"))  # short: Ray's socket paths end at 107 bytes
    yield d
    if not leftovers(d):
        shutil.rmtree(d, ignore_errors=True)


# --- credentials: a worker node without them (make test) ---------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_worker_node_without_s3_variables_stops_the_job_before_any_work(s3, work):
    """The head has the S3 variables, the worker node none: the job is refused in preflight,
    naming that node (not the head) and the variables; no engine starts and nothing is written
    under the output. No engine start: this costs the cluster's start and one zero-CPU task per
    node."""
    c = cluster(s3, work / "ray", ("bare",), worker_cpus=1,
                worker_env={"bare": {v: None for v in S3_VARS}})
    _, cat = write_catalog(s3, "mn-creds", 20)
    out = "s3://mn-creds/out/"
    try:
        c.start()
        rc, text = finish(pdgen(spec_for(cat, out), c.head.address, "--run-id", "creds-1", work=work), 300)
        actors = engine_actors(c.url)
        head = next(n.node_id for n in alive_nodes(c.url) if n.is_head_node)
    finally:
        left = c.stop()
    chaos.record("node: worker node without S3 variables refused before any work", rows=0,
                 result="ok" if rc == 2 and not actors else f"rc {rc}, {len(actors)} engine(s)",
                 faults={"node_without_s3_env": 1})
    assert rc == 2, text[-4000:]
    bare = c.node_ids["bare"]
    assert f"node {bare} lacks PDGEN_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" in text, text[-4000:]
    assert head not in text.split("error:", 1)[-1], "the head, which has the variables, was named too"
    assert "before any work" in text and "environment of every node" in text, text[-4000:]
    assert TEST_SECRET not in text  # names, never values
    assert actors == [], f"an engine started: {actors}"
    assert chaos.s3_objects(out) == {}, "something was written under the output"
    assert left == []


# --- node loss (make chaos) --------------------------------------------------------------------


class NodeKiller(threading.Thread):
    """SIGKILLs a worker node (its ``ray start``, raylet, agents and workers at once) ``delay_s``
    after an engine actor is ALIVE, while the job still runs: the node of that engine, so the
    node lost always holds a working engine (``victim``, chosen then), and notes where the
    engines were (``engines_before``). Waiting for an engine on a node named in advance missed
    the window twice on a loaded machine (the engines' whole work took 30-40 s)."""

    def __init__(self, c: LocalCluster, proc: subprocess.Popen, delay_s: float = 1.0,
                 timeout: float = 900):
        super().__init__(daemon=True)
        self.c, self.proc, self.delay_s, self.timeout = c, proc, delay_s, timeout
        self.victim: str | None = None
        self.killed: list[int] = []
        self.engines_before: dict[str, int] = {}
        self.job_running_at_kill = False
        self.error: str | None = None

    def run(self) -> None:
        deadline, since = time.monotonic() + self.timeout, None
        try:
            while time.monotonic() < deadline and self.proc.poll() is None:
                alive = engine_actors(self.c.url, "ALIVE")
                if alive:  # engines are working: the run is mid-way
                    since = since or time.monotonic()
                    if time.monotonic() - since >= self.delay_s:
                        pids = {n: set(w.pids()) for n, w in self.c.nodes.items()}
                        where = [self.c.name_of(a.node_id) or next((n for n, p in pids.items() if a.pid in p), None)
                                 for a in engine_actors(self.c.url, "ALIVE")]
                        self.engines_before = {n: where.count(n) for n in self.c.workers}
                        self.victim = next((n for n in where if n in self.c.workers), None)
                        if self.victim is not None:  # else not placed on a worker yet: look again
                            self.job_running_at_kill = self.proc.poll() is None
                            self.killed = self.c.nodes[self.victim].kill()
                            return
                time.sleep(0.5)
        except Exception as exc:  # reported by the test, not swallowed
            self.error = f"{type(exc).__name__}: {exc}"


@pytest.mark.chaos
@pytest.mark.timeout(1800)
def test_worker_node_lost_mid_run_loses_and_duplicates_nothing(s3, work):
    table, cat = write_catalog(s3, "mn-node-loss", 600)
    out, run_id = "s3://mn-node-loss/out/", "node-loss-1"
    spec = spec_for(cat, out, replicas=2)
    # Three CPUs a worker: one engine, Ray Data's other tasks, and room for the lost node's engine.
    c = cluster(s3, work / "ray", ("w1", "w2"), worker_cpus=3)
    t0 = time.monotonic()
    try:
        c.start()
        first = pdgen(spec, c.head.address, "--run-id", run_id, work=work)
        killer = NodeKiller(c, first)
        killer.start()
        rc1, text1 = finish(first)
        killer.join(timeout=30)
        assert killer.error is None, killer.error
        assert killer.killed and killer.job_running_at_kill, f"the node was not killed mid-run:\n{text1[-3000:]}"
        assert killer.engines_before[killer.victim] >= 1, killer.engines_before  # a working engine was lost
        assert not c.nodes[killer.victim].pids(), "a process of the killed node survived"
        resumed = rc1 != 0
        if resumed:  # a clear message that names the run to resume, not a bare traceback
            assert "--resume node-loss-1" in text1, text1[-4000:]
        # Either way --resume finishes it exactly once: a committed run is not committed again.
        rc2, text2 = finish(pdgen(spec, c.head.address, "--resume", run_id, work=work))
        assert rc2 == 0, text2[-4000:]
        wall = time.monotonic() - t0
        engines_started = len(engine_actors(c.url))  # both runs' actors, replacements included
    finally:
        left = c.stop()
    rec = storage.read_json(storage.resolve(out).child("runs", f"{run_id}.json"))
    a = chaos.audit(out, "description", rec, chaos.expected_keys(table, COLUMNS))
    versions = rec["tables"]
    chaos.record("node: SIGKILL a worker node (raylet and workers) mid-run", rows=a.rows, lost=a.lost,
                 duplicated=a.duplicated, result="ok" if a.ok else "; ".join(a.problems), wall_s=wall,
                 faults={"node_sigkill": 1, "processes_killed": len(killer.killed)},
                 first_run="failed, resumed" if resumed else "completed on the remaining node",
                 node_killed=killer.victim, engines_by_node_at_kill=killer.engines_before,
                 engine_actors_started=engines_started, table_versions=versions)
    assert a.ok, (a, rec["counts"])
    assert a.committed + a.rejected == rec["counts"]["valid"]
    assert left == []


# --- the node check's pieces, without a cluster ---------------------------------------------------


def test_a_node_needs_the_s3_variables_the_driver_uses(monkeypatch):
    """Endpoint and keys set here: a node lacking any of them is named by the first variable of
    each group; an alias (AWS_ENDPOINT_URL for PDGEN_S3_ENDPOINT) satisfies its group."""
    from pdgen_core import preflight

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    groups = preflight.needed_s3_vars()
    assert [g[0] for g in groups] == ["PDGEN_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert preflight.missing_here(groups) == []
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert preflight.missing_here(groups) == ["AWS_SECRET_ACCESS_KEY"]
    for v in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(v)
    assert preflight.missing_here(groups) == ["PDGEN_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]


def test_aws_without_endpoint_or_keys_needs_nothing_on_a_node(monkeypatch):
    """AWS with an instance role: no endpoint, no keys, so a node needs none of the variables."""
    from pdgen_core import preflight

    for v in (*S3_VARS, "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(v, raising=False)
    assert preflight.needed_s3_vars() == []


def test_in_process_ray_is_not_checked(monkeypatch):
    """Without RAY_ADDRESS (or with RAY_ADDRESS=local) the driver starts Ray in-process, whose
    workers inherit its environment: no node to check."""
    from pdgen_core import preflight

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray = sys.modules.get("ray")
    # In the full suite the session's in-process Ray (one node) is up by now: still no cluster;
    # an initialized Ray of more than one node would be one.
    multi = bool(ray and ray.is_initialized() and sum(1 for n in ray.nodes() if n.get("Alive")) > 1)
    assert preflight._joined_cluster() is multi
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert preflight._joined_cluster() is multi
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert preflight._joined_cluster() is True


def test_per_node_results_leave_out_a_node_lost_since_it_was_listed(monkeypatch):
    """A per-node task sent to a node that died after ``ray.nodes()`` listed it raises
    TaskUnschedulableError: that node is left out (it runs nothing of the job); the same error
    from a node the GCS still calls alive is raised (``ray_session.gather_alive``, used by the
    preflight's S3 check, model and adapter resolution on every node)."""
    import ray

    from pdgen_core.ray_session import gather_alive

    alive = {"a": True, "lost": False}
    monkeypatch.setattr(ray, "nodes", lambda: [{"NodeID": k, "Alive": v} for k, v in alive.items()])

    def get(ref):
        if ref == "lost-ref":
            raise ray.exceptions.TaskUnschedulableError("node dead")
        return ref.upper()

    monkeypatch.setattr(ray, "get", get)
    assert gather_alive({"a": "a-ref", "lost": "lost-ref"}) == {"a": "A-REF"}
    alive["lost"] = True
    with pytest.raises(ray.exceptions.TaskUnschedulableError):
        gather_alive({"a": "a-ref", "lost": "lost-ref"})
