"""``make local-ray``: the whole system on this machine, checked end to end through the Ray Jobs API.

    python -m pdgen_core.tools.local_ray            # start, submit, check, stop; exit 0 when all passed
    python -m pdgen_core.tools.local_ray --keep     # ... then keep the cluster up for `pdgen submit`

1. Starts the local S3 endpoint (moto, its own process) and a Ray head on 127.0.0.1
   (``ray start --head --block`` in its own process group, free ports, a private temp dir, token
   auth off). The S3 endpoint *and credentials* are in the head's environment, so the cluster's
   workers inherit them; the jobs' runtime env carries the endpoint only (runtime envs are shown
   in the dashboard). The head runs from this venv (its bin/ first on PATH, this source tree on
   PYTHONPATH), so jobs are submitted without a pip runtime env.
2. Writes a small synthetic catalog (with bad rows) and submits the real entry points:
   ``generate`` -> two prices change -> ``pdgen service start`` -> ``refresh`` (through the
   service) -> ``pdgen service stop`` -> ``finetune`` (a LoRA, a few steps).
3. Checks the outputs: run records whose counts balance, rows in the content Delta table, a
   refresh that regenerated exactly the changed skus on the service's engine, the service
   commands' answers, an adapter version in the registry, and an HTML report built from the
   generate run.
4. Stops everything it started in a ``finally`` (also on Ctrl-C, SIGTERM or a failure), by
   process group and by the PIDs that carry its temp dir: never ``ray stop``, which would end
   every Ray on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pdgen_core import jobs_api, storage
from pdgen_core.finetune.registry import list_adapters
from pdgen_core.models.resolve import resolve_model
from pdgen_core.report import build_report
from pdgen_core.settings import get_settings
from pdgen_core.spec import spec_from_dict
from pdgen_core.stages.commit import open_table
from pdgen_core.synth import write_catalog
from pdgen_core.testing.child import free_port
from pdgen_core.testing.cluster import LocalCluster, RayHead, engine_actors  # noqa: F401 (RayHead: re-export)
from pdgen_core.testing.s3server import LocalS3

CATALOG = "s3://catalog/products/"
MODEL = "smollm2-135m-instruct"
WORKERS = ("w1", "w2")  # worker nodes beside the head; one engine on each
OUTPUT = "s3://content/local-ray/"
ROWS, BAD_ROWS, CHANGED = 40, 4, 2  # ROWS: the default of --rows
BIN = Path(sys.executable).parent  # the venv's bin/: `ray`, and the `python` jobs run with
BUDGET_S = 900  # the whole run; a job still running when it is spent is stopped and fails
CLEANUP_S = 45  # kept back from the budget for stopping everything
AGENT_WAIT_S = 120  # for the head's job agent to register, after the Jobs API first answers


def say(msg: str) -> None:
    print(f"[local-ray] {msg}", flush=True)


# --- processes ----------------------------------------------------------------------------------


def head_env(s3_env: dict[str, str], source: Path) -> dict[str, str]:
    """Every node's environment. The S3 endpoint and credentials are in it as a KubeRay pod has
    them from a Secret: each node's workers inherit them from their own node, and no job's
    runtime env carries them (runtime envs are shown in the dashboard)."""
    # PDGEN_ENGINE_SERVICE: the refresh uses the service this scenario starts, whatever the
    # caller's setting (the test suite turns it off for its own jobs).
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "PDGEN_ENGINE_SERVICE")}
    env.update(s3_env)
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(p for p in (str(source), env.get("PYTHONPATH", "")) if p),
        PDGEN_CACHE_DIR=str(get_settings().cache_dir),  # the head's; each worker has its own
        PDGEN_LOG_JSON="1",
        RAY_USAGE_STATS_ENABLED="0",
        # Ray 2.60 turns token auth on whenever ~/.ray/auth_token exists, which on a shared machine
        # depends on what others ran; this head listens on 127.0.0.1 only.
        RAY_AUTH_MODE="disabled",
    )
    return env


# --- specs --------------------------------------------------------------------------------------


def generate_spec() -> dict:
    """``configs/demo.yaml`` made small: short texts, every text kept, one attempt."""

    d = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "demo.yaml").read_text())
    for key in ("reviews", "segments"):  # description only: no reviews, one variant per sku
        d.pop(key, None)
    d.update(name="local-ray", catalog={**d["catalog"], "uri": CATALOG}, tasks=["description"],
             output={"uri": OUTPUT}, mode="incremental",
             # The real model: the guard rejects pdgen-tiny's word salad, and the checks below
             # need committed text (the refresh changes prices of skus that have content).
             model={"source": MODEL, "max_model_len": 1024},
             sampling={**d.get("sampling", {}), "max_tokens": 32},
             # One engine per worker node: the head has no CPUs, each worker room for one engine
             # and Ray Data's other tasks; Ray Data spreads its actors over nodes.
             resources={**d.get("resources", {}), "replicas": len(WORKERS),
                        # Two engines on one machine: SmolLM2's default CPU share, 0.3 of host
                        # memory (7 GB each), had one killed by Ray's memory monitor here; one
                        # thread each on the two cores.
                        "memory_fraction": 0.2, "engine_threads": 1},
             guardrails={"min_chars": 1, "max_attempts": 1})
    spec_from_dict(d, "local-ray generate spec")  # a broken spec fails here, not in a job
    return d


def finetune_spec(base_model: str) -> dict:
    """A LoRA on ``base_model``, two steps on a few hundred synthetic pairs; checkpoints and the
    registry on the local S3."""
    from pdgen_core.finetune.config import spec_from_dict

    d = {
        "name": "local-ray-lora", "task": "description",
        "data": {"uri": "synth://160", "min_chars": 20, "val_fraction": 0.1, "test_fraction": 0.05},
        "model": {"source": base_model, "max_seq_len": 192},
        "lora": {"rank": 8, "alpha": 16},
        "optim": {"lr": 0.05, "warmup_steps": 1},
        "train": {"max_steps": 2, "batch_size": 8, "eval_samples": 2, "max_new_tokens": 8,
                  "eval_every_steps": 2},
        "resources": {"num_workers": 1, "cpus_per_worker": 1},
        "storage_path": OUTPUT + "finetune/ray", "output": {"uri": OUTPUT},
    }
    spec_from_dict(d, "local-ray finetune spec")
    return d


# --- jobs and checks ----------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    job_id: str = "-"
    status: str = "not run"
    seconds: float = 0.0
    note: str = ""


@dataclass
class Report:
    rows: int = ROWS  # good catalog rows written (--rows); BAD_ROWS bad ones beside them
    steps: list[Step] = field(default_factory=list)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(ok), detail))
        say(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""))
        return bool(ok)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)


def _submit(step: Step, spec: Path, entrypoint: str, url: str, endpoint: str, sets: tuple[str, ...] = ()) -> None:
    t0 = time.monotonic()
    while True:
        try:
            # No env_vars: the endpoint and credentials are each node's own (``head_env``).
            step.job_id = jobs_api.submit(spec, url, entrypoint, pip=False, sets=sets)
            step.status = "RUNNING"
            return
        except (RuntimeError, ConnectionError) as exc:
            # On a busy machine the Jobs API answers before the node's job agent has registered
            # ("No available agent to submit job, please try again later"), and the dashboard can
            # miss a connection check ("Failed to connect to Ray"). No job was created: retry.
            transient = isinstance(exc, ConnectionError) or "No available agent" in str(exc)
            if not transient or time.monotonic() - t0 > AGENT_WAIT_S:
                raise
            say(f"{step.name}: submission not accepted yet ({exc}); retrying")
            time.sleep(3)


def _wait(step: Step, url: str, deadline: float) -> None:
    unreachable_since = None
    while True:
        try:
            info = jobs_api.wait_for(step.job_id, url, timeout_s=max(1.0, deadline - time.monotonic()), poll_s=2)
            step.status, step.note = info.status, info.message
            return
        except TimeoutError:
            jobs_api.stop(step.job_id, url)
            step.status, step.note = "TIMEOUT", "still running when the budget ran out; stopped"
            return
        except ConnectionError:  # a dashboard too busy to answer once is not a failed job
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > AGENT_WAIT_S:
                raise
            time.sleep(3)


def run_job(step: Step, spec: Path, entrypoint: str, url: str, endpoint: str, logs: Path,
            deadline: float, sets: tuple[str, ...] = ()) -> bool:
    """Submit through the Jobs API (the path of ``pdgen submit --no-pip``), wait until the job
    ends or ``deadline`` (monotonic) passes, keep the log."""

    t0 = time.monotonic()
    _submit(step, spec, entrypoint, url, endpoint, sets)
    say(f"{step.name}: submitted {step.job_id}")
    _wait(step, url, deadline)
    step.seconds = time.monotonic() - t0
    try:
        text = "".join(jobs_api.logs(step.job_id, url))
    except ConnectionError as exc:
        text = f"(log not available: {exc})"
    (logs / f"{step.name}.log").write_text(text)
    say(f"{step.name}: {step.status} in {step.seconds:.0f}s (log: {logs / (step.name + '.log')})")
    if step.status != "SUCCEEDED":
        tail = "\n".join(text.splitlines()[-40:])
        print(f"--- last lines of the {step.name} job's log ---\n{tail}\n---", file=sys.stderr, flush=True)
    return step.status == "SUCCEEDED"


def job_ok(report: Report, step: Step, ok: bool) -> bool:
    return report.check(f"{step.name}: job succeeded", ok, f"{step.status} in {step.seconds:.0f}s")


def run_records(output: str) -> dict[str, dict]:
    runs = storage.resolve(output).child("runs")
    return {Path(f).stem: storage.read_json(storage.resolve("s3://" + f)) for f in storage.list_files(runs, ".json")}


def one_new_record(report: Report, step: str, before: dict) -> dict | None:
    new = [r for k, r in run_records(OUTPUT).items() if k not in before]
    report.check(f"{step}: one new run record", len(new) == 1,
                 f"{len(new)} new under {OUTPUT}runs/" + (f" ({new[0]['run_id']})" if len(new) == 1 else ""))
    return new[0] if len(new) == 1 else None


def counts_balance(report: Report, step: str, rec: dict) -> bool:
    c = rec["counts"]
    problems = []
    if c["read"] != report.rows + BAD_ROWS:
        problems.append(f"read {c['read']} != {report.rows + BAD_ROWS} catalog rows")
    if c["read"] != c["valid"] + c["invalid"]:
        problems.append(f"read {c['read']} != valid {c['valid']} + invalid {c['invalid']}")
    for task, v in c["by_task"].items():
        if not (v["planned"] == c["valid"] == v["accepted"] + v["rejected"] + v["unchanged"]):
            problems.append(f"{task}: planned {v['planned']}, valid {c['valid']} != accepted "
                            f"{v['accepted']} + rejected {v['rejected']} + unchanged {v['unchanged']}")
    t = c["by_task"].get("description", {})
    return report.check(f"{step}: counts balance", not problems, "; ".join(problems) or
                        f"read {c['read']} = valid {c['valid']} + invalid {c['invalid']}; description: "
                        f"accepted {t.get('accepted')}, rejected {t.get('rejected')}, unchanged {t.get('unchanged')}")


def table_rows(kind: str, columns: list[str], run_id: str | None = None) -> list[dict]:
    loc = storage.resolve(OUTPUT).child(kind, "description")
    dt = open_table(loc)
    if dt is None:
        return []
    # Filtered here, not with to_pyarrow_table(filters=...): files written by a Delta merge hold
    # string_view columns, and a string filter on them raises ArrowNotImplementedError. Our own
    # filesystem, not deltalake's: that one can abort the process at exit (README, Outputs).
    rows = dt.to_pyarrow_table(columns=columns, filesystem=storage.table_filesystem(loc)).to_pylist()
    return [r for r in rows if run_id is None or r.get("run_id") == run_id]


def change_prices(skus_with_content: set[str], n: int) -> list[str]:
    """Raise the price of ``n`` skus that have content, in the first catalog file (bad rows are in
    the last one), as a catalog team's price update would."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    loc = storage.resolve(CATALOG)
    first = sorted(storage.list_files(loc, ".parquet"))[0]
    t = pq.read_table(first, filesystem=loc.fs)
    skus = [s for s in t.column("product_id").to_pylist() if s in skus_with_content][:n]
    bumped = pc.if_else(pc.is_in(t.column("product_id"), pa.array(skus)),
                        pc.add(t.column("price_usd"), 5.0), t.column("price_usd"))
    pq.write_table(t.set_column(t.schema.get_field_index("price_usd"), "price_usd", bumped), first,
                   filesystem=loc.fs)
    return skus


def check_generate(report: Report, rec: dict, work: Path) -> set[str]:
    """Returns the skus that have content after the run."""
    counts_balance(report, "generate", rec)
    rows = table_rows("content", ["sku", "run_id", "text"])
    accepted = rec["counts"]["by_task"]["description"]["accepted"]
    report.check("generate: content Delta table has rows",
                 0 < len(rows) == accepted and {r["run_id"] for r in rows} == {rec["run_id"]},
                 f"{len(rows)} rows (accepted {accepted}), table version {rec['tables'].get('content/description')}")

    try:
        html = build_report(OUTPUT, rec["run_id"], str(work / "report.html")).read_text()
        report.check("generate: HTML report builds", rec["run_id"] in html, str(work / "report.html"))
    except Exception as exc:  # a report bug must not hide the other checks
        report.check("generate: HTML report builds", False, f"{type(exc).__name__}: {exc}")
    return {r["sku"] for r in rows}


class EngineWatch(threading.Thread):
    """Where the engine actors run, from Ray's state API while a job runs: the API keeps no node
    id for many actors once they are dead, and gives none while one is still being created (its
    engine loading, minutes on a busy machine). Then the actor's pid, which the API does give,
    places it: the node whose ``ray start`` process tree holds that pid."""

    def __init__(self, cluster: LocalCluster):
        super().__init__(daemon=True)
        self.cluster, self.seen, self.done = cluster, {}, threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            try:
                for a in engine_actors(self.cluster.url):
                    node = a.node_id or self._node_of_pid(a.pid)
                    if node and a.state in ("ALIVE", "PENDING_CREATION"):
                        self.seen[a.actor_id] = node
            except Exception:  # a busy dashboard misses a poll; the next one counts
                pass

    def _node_of_pid(self, pid: int | None) -> str | None:
        if not pid:
            return None
        return next((self.cluster.node_ids.get(n) for n, w in self.cluster.nodes.items() if pid in w.pids()), None)

    def stop(self) -> dict[str, str]:
        self.done.set()
        self.join(timeout=30)
        return dict(self.seen)


def check_spread(report: Report, cluster: LocalCluster, seen: dict[str, str]) -> None:
    """One engine actor on each worker node and none on the head: where the generate job's
    engine actors ran (``EngineWatch``)."""
    head = _head_id(cluster)
    by_node: dict[str, int] = {}
    for node in seen.values():
        name = cluster.name_of(node) or ("head" if node == head else node[:8])
        by_node[name] = by_node.get(name, 0) + 1
    report.check("generate: one engine on each worker node (Ray state API)",
                 by_node == {w: 1 for w in cluster.workers},
                 ", ".join(f"{n} ({cluster.node_ids.get(n, '?')[:8]}): {k} engine actor(s)"
                           for n, k in sorted(by_node.items())) or "no engine actors listed")


def _head_id(cluster: LocalCluster) -> str | None:
    from pdgen_core.testing.cluster import alive_nodes

    return next((n.node_id for n in alive_nodes(cluster.url) if n.is_head_node), None)


def check_caches(report: Report, cluster: LocalCluster) -> None:
    """Each worker node resolved the model into its own cache (``PDGEN_CACHE_DIR`` of its
    ``ray start``), the folder the head's cache holds."""
    folder = resolve_model(MODEL).name  # this process shares the head's cache
    have = {w: (cluster.cache_of(w) / "models" / folder / "config.json").is_file() for w in cluster.workers}
    report.check("generate: each worker node has the model in its own cache", all(have.values()),
                 ", ".join(f"{w}: {cluster.cache_of(w) / 'models' / folder}{'' if ok else ' MISSING'}"
                           for w, ok in have.items()))


def check_refresh(report: Report, rec: dict, changed: list[str], valid_without_content: set[str]) -> None:
    counts_balance(report, "refresh", rec)
    rid = rec["run_id"]
    regenerated = ({r["sku"] for r in table_rows("content", ["sku", "run_id"], rid)}
                   | {r["sku"] for r in table_rows("rejects", ["sku", "run_id", "stage"], rid)
                      if r["stage"] != "validate"})
    # Incremental: the changed skus, plus any valid sku without content that the guardrails did
    # not reject (an engine error is retried; a guard rejection of the same inputs is not: the
    # seeded engine would write the same text again).
    guard_rejected = {r["sku"] for r in table_rows("rejects", ["sku", "stage"]) if r["stage"] == "guard"}
    valid_without_content = valid_without_content - guard_rejected
    expected = set(changed) | valid_without_content
    t = rec["counts"]["by_task"]["description"]
    report.check(
        f"refresh: regenerated exactly the {len(changed)} changed skus",
        len(changed) == CHANGED and regenerated == expected and t["accepted"] + t["rejected"] == len(expected),
        f"changed {sorted(changed)}, regenerated {sorted(regenerated)}"
        + (f" (incl. {len(valid_without_content)} without content)" if valid_without_content else ""),
    )


def _pdgen(cluster: LocalCluster, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``pdgen ARGS`` as an operator runs it beside the cluster: RAY_ADDRESS is the head's GCS."""
    assert cluster.head is not None
    env = {**cluster.env, "RAY_ADDRESS": cluster.head.address}
    try:
        return subprocess.run([str(BIN / "pdgen"), *args], env=env, capture_output=True, text=True,
                              timeout=max(30.0, timeout))
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, 124, exc.stdout or "", f"timed out after {exc.timeout:.0f}s")


def _last(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (r.stdout + "\n" + r.stderr).splitlines() if ln.strip()]
    return f"rc {r.returncode}: " + (" | ".join(lines[-3:]) if r.returncode else (r.stdout.strip().splitlines() or [""])[-1])


def service_start(report: Report, cluster: LocalCluster, spec: Path, sets: tuple[str, ...], deadline: float) -> bool:
    """``pdgen service start SPEC`` then ``pdgen service status --json`` against the head (issue
    23: the commands on a started cluster, not an in-process Ray)."""
    t0 = time.monotonic()
    say("service: pdgen service start (one replica) ...")
    args = ["service", "start", str(spec)] + [a for kv in sets for a in ("--set", kv)]
    r = _pdgen(cluster, args, deadline - time.monotonic())
    started = report.check("service: `pdgen service start` deployed it and waited for its engine",
                           r.returncode == 0 and "generation service: RUNNING, 1 replica(s)" in r.stdout,
                           f"{_last(r)} ({time.monotonic() - t0:.0f}s)")
    if not started:
        return False
    r = _pdgen(cluster, ["service", "status", "--json"], 120)
    try:
        st = json.loads(r.stdout)
    except ValueError:
        st = {}
    return report.check("service: `pdgen service status` says RUNNING (exit 0)",
                        r.returncode == 0 and st.get("status") == "RUNNING" and st.get("model") is not None,
                        _last(r) if r.returncode else f"{st.get('status')}, {st.get('replicas')} replica(s) of {st.get('model')}")


def service_stop(report: Report, cluster: LocalCluster) -> None:
    r = _pdgen(cluster, ["service", "stop"], 180)
    stopped = r.returncode == 0 and "stopped the generation service" in r.stdout
    after = _pdgen(cluster, ["service", "status"], 120)
    report.check("service: `pdgen service stop` removed it, and status then exits 1",
                 stopped and after.returncode == 1 and "generation service: NOT_RUNNING" in after.stdout,
                 f"stop {_last(r)}; status {_last(after)}")


def check_finetune(report: Report, spec_name: str) -> None:
    ads = [a for a in list_adapters(OUTPUT, "description") if a["run_id"] == spec_name]
    report.check("finetune: adapter version registered", bool(ads),
                 ", ".join(f"v{a['version']} {a['kind']} at {a['uri']}" for a in ads) or "none in the registry")


def pdgen_metrics(port: int) -> dict[str, float]:
    """Totals of the ``ray_pdgen_*`` series on a node's Prometheus endpoint (see pdgen_core.metrics)."""
    import urllib.request

    out: dict[str, float] = {}
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("ray_pdgen_") and "_bucket{" not in line:
            name = line.split("{", 1)[0].split(" ", 1)[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def print_summary(report: Report, cluster: LocalCluster | None, endpoint: str, total_s: float) -> None:
    print("\nlocal-ray summary", flush=True)
    head = cluster.head if cluster is not None else None
    if head is not None:
        print(f"  Ray head {head.url} (Jobs API, dashboard, 0 CPUs); metrics http://127.0.0.1:{head.metrics}/metrics;"
              f" S3 {endpoint}")
        for name, w in cluster.nodes.items():
            print(f"  worker node {name} {cluster.node_ids.get(name, '(not up)')} {w.num_cpus} CPUs,"
                  f" cache {cluster.cache_of(name)}")
        m: dict[str, float] = {}
        for port in [head.metrics, *(w.metrics for w in cluster.nodes.values())]:  # engines are on the workers
            for k, v in pdgen_metrics(port).items():
                m[k] = m.get(k, 0.0) + v
        print("  pdgen metrics: " + (", ".join(f"{k} {v:g}" for k, v in sorted(m.items())) if m else
                                     "none exported (is pdgen_core.metrics.record_batch wired into the pipeline?)"))
    for s in report.steps:
        print(f"  job {s.name:<9} {s.job_id:<40} {s.status:<10} {s.seconds:6.1f}s {s.note}".rstrip())
    for name, ok, detail in report.checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}" + (f": {detail}" if detail else ""))
    failed = [n for n, ok, _ in report.checks if not ok]
    if report.passed:
        print(f"local-ray: all {len(report.checks)} checks passed in {total_s:.0f}s", flush=True)
    else:
        print(f"local-ray: FAILED: {len(failed)} of {len(report.checks)} checks failed ({'; '.join(failed) or 'none ran'})"
              f" after {total_s:.0f}s", flush=True)


# --- main ---------------------------------------------------------------------------------------


def stop_running_jobs(report: Report, url: str, wait_s: float = 20) -> None:
    """Ask the Jobs API to stop jobs still running (Ctrl-C mid-job), so their drivers end cleanly."""

    for s in report.steps:
        if s.status == "RUNNING":
            try:
                jobs_api.stop(s.job_id, url)
                jobs_api.wait_for(s.job_id, url, timeout_s=wait_s)
            except Exception as exc:  # the head may be gone already: the process sweep follows
                say(f"could not stop {s.job_id} through the Jobs API ({type(exc).__name__}); killing it")


def _terminate(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def upload_base_model() -> str:
    """The fine-tune's base model, on S3 as a cluster would have it: this node's cached
    ``pdgen-tiny`` folder. (``model.source: pdgen-tiny`` in a fine-tune spec means the *trained*
    tiny model, which is trained on first use: minutes, not what this check is about.)"""

    uri = OUTPUT + "models/base/"
    storage.upload_dir(resolve_model("pdgen-tiny"), storage.resolve(uri))
    return uri


def _valid_skus() -> set[str]:
    """Skus of the catalog that validation keeps (not in the first run's validate rejects)."""
    import pyarrow.dataset as pads

    loc = storage.resolve(CATALOG)
    skus = set(pads.dataset(storage.list_files(loc, ".parquet"), filesystem=loc.fs)
               .to_table(columns=["product_id"]).column("product_id").to_pylist())
    bad = {r["sku"] for r in table_rows("rejects", ["sku", "stage"]) if r["stage"] == "validate"}
    return {s for s in skus if s is not None} - bad


def scenario(report: Report, cluster: LocalCluster, endpoint: str, work: Path, deadline: float) -> None:
    url = cluster.url
    write_catalog(CATALOG, report.rows, files=2, bad_rows=BAD_ROWS)
    say(f"catalog: {report.rows} products + {BAD_ROWS} bad rows -> {CATALOG}")
    specs = work / "specs"
    specs.mkdir()
    (specs / "generate.yaml").write_text(yaml.safe_dump(generate_spec(), sort_keys=False))
    ft = finetune_spec(upload_base_model())
    (specs / "finetune.yaml").write_text(yaml.safe_dump(ft, sort_keys=False))
    logs = work / "jobs"
    logs.mkdir()

    gen = Step("generate")
    report.steps.append(gen)
    before = run_records(OUTPUT)
    watch = EngineWatch(cluster)
    watch.start()
    try:
        ok = run_job(gen, specs / "generate.yaml", "generate", url, endpoint, logs, deadline)
    finally:
        seen = watch.stop()
    if job_ok(report, gen, ok):
        check_spread(report, cluster, seen)
        check_caches(report, cluster)
        rec = one_new_record(report, "generate", before)
        if rec is not None:
            with_content = check_generate(report, rec, work)
            valid_without = _valid_skus() - with_content
            changed = change_prices(with_content, CHANGED)
            say(f"refresh: prices of {changed} raised by 5.00 USD")
            ref = Step("refresh")
            report.steps.append(ref)
            before = run_records(OUTPUT)
            # One engine is enough for the few changed rows (resources are in no fingerprint).
            sets = ("resources.replicas=1",)
            served = service_start(report, cluster, specs / "generate.yaml", sets, deadline)
            try:
                if job_ok(report, ref, run_job(ref, specs / "generate.yaml", "refresh", url, endpoint, logs,
                                               deadline, sets=sets)):
                    rec2 = one_new_record(report, "refresh", before)
                    if rec2 is not None:
                        check_refresh(report, rec2, changed, valid_without)
                        if served:
                            engine = rec2.get("engine") or {}
                            report.check("refresh: generated on the service's engine (no engine start)",
                                         engine.get("kind") == "service", str(engine))
            finally:
                if served:  # the fine-tune needs the worker's CPUs and memory back
                    service_stop(report, cluster)

    fin = Step("finetune")
    report.steps.append(fin)
    if job_ok(report, fin, run_job(fin, specs / "finetune.yaml", "finetune", url, endpoint, logs, deadline)):
        check_finetune(report, ft["name"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="After the checks, keep the cluster and S3 up "
                    "(for `pdgen submit`) until Ctrl-C.")
    ap.add_argument("--timeout", type=float, default=BUDGET_S, metavar="SECONDS",
                    help=f"Budget for the whole run (default {BUDGET_S}); a job still running then is "
                    "stopped and fails.")
    ap.add_argument("--rows", type=int, default=ROWS, help=f"Good catalog rows to generate for (default {ROWS}; "
                    f"{BAD_ROWS} bad rows go beside them). The test suite runs fewer.")
    a = ap.parse_args(argv)
    if a.rows <= CHANGED:
        ap.error(f"--rows must exceed {CHANGED}, the rows the refresh step changes")

    t0 = time.monotonic()
    signal.signal(signal.SIGTERM, _terminate)
    # Also when started in the background of a script, where SIGINT comes in ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="pdlr-", dir="/tmp"))  # short: Ray's socket paths end at 107 bytes
    report, cluster, s3 = Report(rows=a.rows), None, LocalS3(port=free_port(), buckets=("catalog", "content"))
    interrupted = summarised = False
    try:
        s3.start()
        os.environ.update(s3.env)  # this process writes the catalog and reads the outputs
        os.environ.pop("RAY_ADDRESS", None)
        say(f"local S3 at {s3.endpoint}")
        cluster = LocalCluster(work / "ray", head_env(s3.env, jobs_api.source_root()), workers=WORKERS,
                               caches=get_settings().cache_dir / "nodes")
        say(f"starting a Ray head and worker nodes {', '.join(WORKERS)} (temp dirs under {cluster.root}) ...")
        url = cluster.start()
        say(f"Ray cluster up in {time.monotonic() - t0:.0f}s: {url}; worker nodes "
            + ", ".join(f"{n} {i[:8]}" for n, i in cluster.node_ids.items()))
        scenario(report, cluster, s3.endpoint, work, deadline=t0 + a.timeout - CLEANUP_S)
        print_summary(report, cluster, s3.endpoint, time.monotonic() - t0)
        summarised = True
        if a.keep:
            _keep(cluster.head, s3, work / "specs" / "generate.yaml")
    except KeyboardInterrupt:
        interrupted = not summarised  # after the summary, Ctrl-C is how --keep ends
        say("interrupted: stopping everything" if interrupted else "stopping everything")
    except Exception as exc:
        report.check("local-ray ran to the end", False, f"{type(exc).__name__}: {exc}")
        print_summary(report, cluster, s3.endpoint, time.monotonic() - t0)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if cluster is not None and cluster.head is not None:
            stop_running_jobs(report, cluster.url)
        left = cluster.stop() if cluster is not None else []
        s3.stop()
        say("stopped the Ray head, its worker nodes and the local S3" + (f"; still alive: {left}" if left else ""))
        if report.passed and not left and not interrupted:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work} (job logs, specs, Ray logs) for a look")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if interrupted:
        return 130
    return 0 if report.passed and not left else 1


def _keep(head: RayHead, s3, spec: Path) -> None:
    print(f"\nThe cluster stays up until Ctrl-C. In another shell:\n"
          f"  export RAY_ADDRESS={head.url} AWS_ENDPOINT_URL={s3.endpoint} "
          f"AWS_ACCESS_KEY_ID={s3.env['AWS_ACCESS_KEY_ID']} AWS_SECRET_ACCESS_KEY={s3.env['AWS_SECRET_ACCESS_KEY']}"
          f"  # local test credentials\n"
          f"  pdgen submit {spec} --no-pip --wait       # or --entrypoint refresh\n"
          f"  pdgen jobs; pdgen report RUN_ID --output {OUTPUT} --out report.html\n", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
