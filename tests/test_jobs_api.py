"""pdgen_core.jobs_api: unit checks here, and a real Ray head (dashboard + Jobs API) on 127.0.0.1.

The e2e part ships a small source tree whose ``ray_jobs/generate.py`` prints its spec, through the
same code path as ``pdgen submit --no-pip``; the real entry points are exercised by ``make local-ray``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import ray.job_submission  # noqa: F401  (Ray binds its log handlers to the real stderr, not a CliRunner's)
import typer
from typer.testing import CliRunner

from pdgen_core import jobs_api
from pdgen_core.cli import jobs as jobs_cli
from pdgen_core.testing.child import free_ports

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

HELLO = textwrap.dedent(
    """\
    import sys, time
    spec = open(sys.argv[1]).read().strip()
    print("hello-pdgen", sys.argv[1], spec, flush=True)
    if "--sleep" in sys.argv:
        time.sleep(float(sys.argv[sys.argv.index("--sleep") + 1]))
        print("bye-pdgen", flush=True)
    """
)


def _app() -> typer.Typer:
    app = typer.Typer()
    jobs_cli.register(app)
    return app


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tiny source tree: pyproject, ray_jobs/generate.py, and a spec inside it."""
    root = tmp_path / "src"
    (root / "ray_jobs").mkdir(parents=True)
    (root / "ray_jobs" / "generate.py").write_text(HELLO)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "0"\ndependencies = ["ray[data]==2.60.0", "pyyaml>=6"]\n'
        '[project.optional-dependencies]\ngpu = ["vllm==0.32.0"]\n'
    )
    (root / "spec.yaml").write_text("name: inside-spec\n")
    (root / ".venv").mkdir()
    return root


# --- unit ---------------------------------------------------------------------------------------


def test_pip_requirements_leave_ray_to_the_cluster():
    reqs = jobs_api.pip_requirements(ROOT)
    assert any(r.startswith("deltalake") for r in reqs)
    assert not any(r.lower().startswith("ray") for r in reqs)
    assert any(r.startswith("vllm==") for r in jobs_api.pip_requirements(ROOT, extras=["gpu"]))
    with pytest.raises(ValueError, match="no extra 'nope'"):
        jobs_api.pip_requirements(ROOT, extras=["nope"])


def test_runtime_env_ships_tree_without_venv(tree):
    env = jobs_api.runtime_env(tree)
    assert env["working_dir"] == str(tree)
    assert {".venv", ".cache", ".git"} <= set(env["excludes"])
    assert env["pip"]["packages"] == ["pyyaml>=6"]
    assert "pip" not in jobs_api.runtime_env(tree, pip=False)


def test_spec_outside_tree_is_staged_beside_it(tree, tmp_path):
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("name: outside-spec\n")
    assert jobs_api._stage(tree, tree / "spec.yaml") == (tree, ["spec.yaml"])
    stage, (rel,) = jobs_api._stage(tree, outside)
    try:
        assert (stage / rel).read_text() == "name: outside-spec\n"
        assert (stage / "ray_jobs" / "generate.py").read_text() == HELLO
        assert not (stage / ".venv").exists()
    finally:
        shutil.rmtree(stage)


def test_unknown_entrypoint_and_missing_address_say_what_to_do(tree, monkeypatch):
    with pytest.raises(ValueError, match=r"no entry point .*refresh\.py.*\['generate'\]"):
        jobs_api.submit(tree / "spec.yaml", "http://127.0.0.1:1", "refresh", working_dir=tree)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    r = CliRunner().invoke(_app(), ["status", "some-job"])
    assert r.exit_code == 2 and "RAY_ADDRESS" in r.output


class _Client:
    """Stands in for Ray's JobSubmissionClient: keeps what would have been submitted."""

    def __init__(self):
        self.submitted: dict = {}

    def submit_job(self, **kw):
        self.submitted = kw
        wd = Path(kw["runtime_env"]["working_dir"])  # staged copies vanish after submit: read them now
        self.shipped = {str(p.relative_to(wd)) for p in (wd / "_pdgen_spec").glob("*")} \
            if (wd / "_pdgen_spec").is_dir() else set()
        return kw["submission_id"]


@pytest.fixture
def client(monkeypatch):
    fake = _Client()
    monkeypatch.setattr(jobs_api, "_client", lambda address: fake)
    return fake


def test_submit_forwards_set_changes_and_resume_to_the_entry_point(client, tmp_path):
    """`pdgen submit` builds the job's command line with the forwarded options, in the syntax of
    the command the entry point runs; the KubeRay CronJob's price-feed refresh is this call."""
    spec = ROOT / "pdgen_core" / "configs" / "demo.yaml"
    r = CliRunner().invoke(_app(), [
        "submit", str(spec), "--address", "http://head:8265", "--no-pip", "--entrypoint", "refresh",
        "--changes", "s3://feeds/prices/latest.parquet", "--set", "sampling.max_tokens=64",
        "--set", "catalog.limit=100", "--resume", "20261201T000000Z-abc123"])
    assert r.exit_code == 0, r.output
    assert client.submitted["entrypoint"] == (
        "python ray_jobs/refresh.py pdgen_core/configs/demo.yaml --set sampling.max_tokens=64 "
        "--set catalog.limit=100 --changes s3://feeds/prices/latest.parquet --resume 20261201T000000Z-abc123")
    # generate takes --set and --resume; a value with spaces stays one argument.
    jobs_api.submit(spec, "http://head:8265", "generate", sets=["name=a b"], resume="r1", pip=False)
    assert client.submitted["entrypoint"] == (
        "python ray_jobs/generate.py pdgen_core/configs/demo.yaml --set 'name=a b' --resume r1")


def test_a_local_changes_feed_travels_with_the_job(client, tmp_path):
    feed = tmp_path / "prices.parquet"
    feed.write_bytes(b"PAR1")
    spec = ROOT / "pdgen_core" / "configs" / "demo.yaml"
    jobs_api.submit(spec, "http://head:8265", "refresh", changes=str(feed), pip=False)
    argv = client.submitted["entrypoint"].split()
    shipped = argv[argv.index("--changes") + 1]
    assert shipped.startswith("_pdgen_spec/") and shipped.endswith("-prices.parquet")
    assert shipped in client.shipped
    with pytest.raises(FileNotFoundError, match="does not exist here"):
        jobs_api.submit(spec, "http://head:8265", "refresh", changes=str(tmp_path / "nope.parquet"), pip=False)


def test_submit_waits_for_a_head_whose_agent_is_not_ready_yet():
    """A fresh head answers 500 "No available agent" for a while: submit waits, other errors raise."""
    calls = []

    class Starting:
        def submit_job(self, **kw):
            calls.append(kw)
            if len(calls) < 3:
                raise RuntimeError("Request failed with status code 500: No available agent to submit job, "
                                   "please try again later..")
            return "job-1"

    assert jobs_api._submit_when_agent_ready(Starting(), wait_s=30, entrypoint="x") == "job-1"
    assert len(calls) == 3

    class Broken:
        def submit_job(self, **kw):
            raise RuntimeError("Request failed with status code 400: bad runtime env")

    with pytest.raises(RuntimeError, match="400"):
        jobs_api._submit_when_agent_ready(Broken(), wait_s=30, entrypoint="x")


def test_forwarded_options_exist_on_the_commands_the_entry_points_run():
    """Each entry point is `pdgen <command>`: what submit forwards must be that command's option,
    and an option it lacks is refused before anything is shipped."""
    import typer.main

    from pdgen_core.cli import app

    commands = typer.main.get_command(app).commands
    for entrypoint, opts in jobs_api.FORWARDED.items():
        script = (ROOT / "ray_jobs" / f"{entrypoint}.py").read_text()
        command = re.search(r'app\(\["([\w-]+)"', script).group(1)
        names = {o for p in commands[command].params for o in p.opts}
        assert set(opts) <= names, (entrypoint, command, set(opts) - names)
    with pytest.raises(ValueError, match=r"--changes is not an option of the 'generate' entry point.*refresh"):
        jobs_api.job_args("generate", changes="s3://feeds/x.parquet")
    with pytest.raises(ValueError, match="--resume is not an option of the 'finetune'"):
        jobs_api.job_args("finetune", resume="r1")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        jobs_api.job_args("generate", sets=["oops"])
    r = CliRunner().invoke(_app(), ["submit", str(ROOT / "pdgen_core" / "configs" / "demo.yaml"),
                                    "--address", "http://head:8265", "--changes", "s3://f/x.parquet"])
    assert r.exit_code == 2 and "--entrypoint refresh" in r.output


# --- e2e: a real Ray head -----------------------------------------------------------------------


def _ours(marker: str) -> list[psutil.Process]:
    """Processes whose command line names our head's private temp dir or GCS port."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in a for a in p.info["cmdline"] or []):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


@pytest.fixture(scope="module")
def ray_head():
    """``ray start --head --block`` in its own process group, on free ports, with a private temp
    dir; stopped by process group and by the PIDs that carry our temp dir, never by ``ray stop`` (which
    would end every Ray on this shared machine)."""
    gcs, dash, client, agent, agent_grpc, metrics, renv, nm, om = free_ports(9)
    # Short on purpose: Ray puts Unix sockets under it, and socket paths end at 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="pdray-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    # Token auth off: Ray 2.60 turns it on for a head whenever ~/.ray/auth_token exists, which on a
    # shared machine depends on what others ran; the dashboard listens on 127.0.0.1 only.
    env.update(PATH=f"{BIN}:{env.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    log = open(temp / "ray-start.log", "w")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1",
         f"--port={gcs}", "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
         f"--runtime-env-agent-port={renv}", f"--node-manager-port={nm}", f"--object-manager-port={om}",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )

    def _stop():
        # SIGTERM, a grace period, then SIGKILL: the group, plus any of ours that left it.
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
            procs = _ours(str(temp))
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                pass
            for p in procs:
                try:
                    p.send_signal(sig)
                except psutil.NoSuchProcess:
                    pass
            try:
                head.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            if not [p for p in _ours(str(temp)) if p.status() != psutil.STATUS_ZOMBIE]:
                break
        log.close()
        shutil.rmtree(temp, ignore_errors=True)

    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                jobs_api.list_jobs(url)  # the real client: also handles Ray's token auth, if on
                break
            except (ConnectionError, RuntimeError, OSError):
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Ray head did not come up:\n{(temp / 'ray-start.log').read_text()}")
                time.sleep(1)
        yield url
    finally:
        _stop()


@pytest.mark.e2e
def test_submit_follow_status_logs_stop_list(ray_head, tree, tmp_path):
    app, runner = _app(), CliRunner()
    outside = tmp_path / "outside.yaml"
    outside.write_text("name: outside-spec\n")

    # The CLI path: ship the tree, stage the spec from outside it, follow logs, exit with the outcome.
    r = runner.invoke(app, ["submit", str(outside), "--address", ray_head, "--no-pip",
                            "--working-dir", str(tree), "--wait"])
    assert r.exit_code == 0, r.output
    job1 = r.stdout.splitlines()[0]
    assert job1.startswith("pdgen-generate-")
    assert "hello-pdgen _pdgen_spec/" in r.output and "name: outside-spec" in r.output
    assert f"{job1} SUCCEEDED" in r.output

    r = runner.invoke(app, ["status", job1, "--address", ray_head])
    assert r.exit_code == 0 and "SUCCEEDED" in r.output
    r = runner.invoke(app, ["logs", job1, "--address", ray_head])
    assert "hello-pdgen" in r.output and "name: outside-spec" in r.output

    # The library path: a spec inside the tree, extra args, stop while it runs.
    job2 = jobs_api.submit(tree / "spec.yaml", ray_head, "generate", ["--sleep", "600"], pip=False,
                           working_dir=tree)
    deadline = time.monotonic() + 120
    while "hello-pdgen" not in "".join(jobs_api.logs(job2, ray_head)):
        assert time.monotonic() < deadline, jobs_api.status(job2, ray_head)
        time.sleep(1)
    assert jobs_api.status(job2, ray_head).status == "RUNNING"
    assert "name: inside-spec" in "".join(jobs_api.logs(job2, ray_head))
    assert jobs_api.stop(job2, ray_head) is True
    final = jobs_api.wait_for(job2, ray_head, timeout_s=120)
    assert final.status == "STOPPED"
    assert "bye-pdgen" not in "".join(jobs_api.logs(job2, ray_head))

    listed = {j.job_id: j for j in jobs_api.list_jobs(ray_head)}
    assert listed[job1].status == "SUCCEEDED" and listed[job2].status == "STOPPED"
    assert listed[job2].entrypoint == "python ray_jobs/generate.py spec.yaml --sleep 600"
    r = runner.invoke(app, ["jobs", "--address", ray_head])
    assert job1 in r.output and job2 in r.output
    r = runner.invoke(app, ["stop", job2, "--address", ray_head])
    assert "already ended" in r.output
    r = runner.invoke(app, ["status", "pdgen-no-such-job", "--address", ray_head])
    assert r.exit_code == 2 and r.output.startswith("error:")
