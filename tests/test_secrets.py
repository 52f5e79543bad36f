"""Secrets: credentials never reach logs, run records, tables, reports or error messages, and a
spec cannot carry them.

A job runs as ``pdgen run`` in a subprocess with sentinel credentials (distinctive values that the
local S3 server accepts); then every output is searched for them, raw, URL-encoded and
JSON-escaped: the job's stdout/stderr, Ray's session logs, every object under the output prefix
(Delta data files and logs, the run record), the HTML report, and the messages of failing runs.
"""

from __future__ import annotations

import io
import json
import shutil
import time

import pyarrow.parquet as pq
import pytest

from pdgen_core import storage
from pdgen_core.testing import chaos
from pdgen_core.spec import SpecError, spec_from_dict
from pdgen_core.synth import make_catalog

SENTINELS = {
    "AWS_ACCESS_KEY_ID": "AKIAPDGENSENTINEL7Q3Z",
    "AWS_SECRET_ACCESS_KEY": "pdgen+Sentinel/Secret=Zq9xW3vKr8Lm2Np4",
    "AWS_SESSION_TOKEN": "pdgenSentinelSessionToken//FwoGZXIvYXdzE+k=",
}
SECRETS = list(SENTINELS.values())
COLUMNS = {"sku": "product_id", "title": "product_name", "price": "price_usd", "brand": "brand"}


def sentinel_env(endpoint: str) -> dict[str, str]:
    env = {"AWS_ENDPOINT_URL": endpoint, "PDGEN_S3_ENDPOINT": endpoint, **SENTINELS}
    env.update({f"PDGEN_{k}": v for k, v in SENTINELS.items()})  # the overrides, if set outside
    return env


def spec_for(catalog: str, out: str) -> dict:
    return {"name": "secrets", "catalog": {"uri": catalog, "columns": COLUMNS},
            "tasks": ["description"], "model": {"source": "pdgen-tiny"}, "output": {"uri": out}, "mode": "full",
            "sampling": {"max_tokens": 16}, "guardrails": {"min_chars": 1, "max_attempts": 1},
            "resources": {"batch_size": 16}}


def cli(args: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    import os
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "pdgen_core.cli", *args], capture_output=True,
                       text=True, errors="replace", timeout=timeout,
                       env={**os.environ, "RAY_ADDRESS": "local", **env})
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module", params=[pytest.param("suite", marks=pytest.mark.e2e),
                                        pytest.param("chaos", marks=pytest.mark.chaos)])
def secret_run(request, s3, tmp_path_factory):
    bucket = f"secrets-{request.param}"
    s3.create_bucket(bucket)
    loc = storage.resolve(f"s3://{bucket}/catalog/c.parquet")
    pq.write_table(make_catalog(20, seed=3, bad_rows=3), loc.path, filesystem=loc.fs)
    out = f"s3://{bucket}/out/"
    env = sentinel_env(s3.endpoint)
    t0 = time.monotonic()
    run = chaos.run_cli(spec_for(loc.uri, out), env, run_id=f"secrets-{request.param}", keep_logs=True)
    assert run.rc == 0, run.output[-3000:]
    texts: dict[str, str | bytes] = {"run stdout": run.stdout, "run stderr": run.stderr}
    texts.update({f"ray log {k}": v for k, v in chaos.files_under(run.ray_logs).items()})
    assert any("/logs/" in k for k in texts), "no Ray session logs found to scan"
    texts.update({f"s3 {k}": v for k, v in chaos.s3_objects(out).items()})
    report = tmp_path_factory.mktemp("report") / "report.html"
    rc, msg = cli(["report", run.record["run_id"], "--output", out, "--out", str(report)], env)
    assert rc == 0, msg[-2000:]
    texts["report html"] = report.read_bytes()
    texts["report cli"] = msg
    # failing runs: their error messages are outputs too
    good_cat = loc.uri
    failing = {
        "missing output bucket": spec_for(good_cat, "s3://no-such-bucket-pdgen/out/"),
        "missing catalog bucket": spec_for("s3://no-such-bucket-pdgen/c/", out),
    }
    fails = {}
    for name, spec in failing.items():
        r = chaos.run_cli(spec, env, run_id=f"fail-{request.param}", timeout=300, keep_logs=True)
        fails[name] = r
        texts[f"failing run ({name})"] = r.output
    down = chaos.run_cli(spec_for(good_cat, out), {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                                                   "PDGEN_S3_ENDPOINT": "http://127.0.0.1:9"},
                         run_id="fail-down", timeout=300, keep_logs=True)
    fails["endpoint down"] = down
    texts["failing run (endpoint down)"] = down.output
    yield run, texts, fails, time.monotonic() - t0
    shutil.rmtree(run.ray_logs.parent, ignore_errors=True)
    for r in fails.values():
        shutil.rmtree(r.ray_logs.parent, ignore_errors=True)


def test_no_output_contains_a_credential(secret_run):
    run, texts, fails, wall = secret_run
    assert any(k.startswith("ray log") for k in texts) and any("_delta_log" in k for k in texts)
    assert any(k.endswith(f"runs/{run.record['run_id']}.json") for k in texts)
    leaks = chaos.find_leaks(SECRETS, texts)
    chaos.record("secrets: sentinel credentials in every output", rows=run.record["counts"]["read"],
                 leaks=len(leaks), result="ok" if not leaks else f"leaks in {leaks[:3]}",
                 wall_s=wall, faults={"outputs_scanned": len(texts), "failing_runs": len(fails)})
    assert not leaks, leaks


def test_a_run_is_quiet_stdout_the_summary_stderr_pdgens_events(secret_run):
    """Issue 20: about 170 lines of vLLM and Ray chatter on every run, some on stdout. Now stdout
    is the summary (table and totals) and stderr pdgen's JSON events; the chatter is in the
    library log and Ray's session logs, which the event ``ray.session`` names (Ray's token-auth
    notice included). Ray's C++ core worker's own lines, which no Python logger carries, go there
    too (the command hands file descriptor 2 to the library log)."""
    run, _, _, _ = secret_run
    out = [line for line in run.stdout.splitlines() if line.strip()]
    assert out[0].strip().startswith(f"run {run.record['run_id']}") and out[-1].startswith("rows read ") and " wall " in out[-1], out
    assert len(out) <= 12, out
    foreign = []
    events = []
    for line in run.stderr.splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line)["event"])
        except (ValueError, KeyError, TypeError):
            foreign.append(line)
    assert foreign == [], foreign
    assert {"ray.session", "run.start", "run.committed"} <= set(events), events
    session = next(json.loads(line) for line in run.stderr.splitlines() if '"ray.session"' in line)
    assert session["library_log"].endswith(".log") and "/logs" in (session["ray_logs"] or "/logs")
    # the run record says where the chatter went, on which host (``run_record.run_logs``)
    logs = run.record["logs"]
    assert logs["library"] == session["library_log"] and logs["ray_session"] == session["ray_logs"] and logs["host"]


def test_failing_runs_fail_cleanly_with_a_fix(secret_run):
    _, _, fails, _ = secret_run
    for name, r in fails.items():
        assert r.rc == 2, (name, r.output[-2000:])
        assert "Traceback" not in chaos.driver_lines(r.stderr), (name, r.stderr[-2000:])
        assert "error:" in r.stderr, (name, r.stderr[-2000:])
    assert "AWS_* credentials in the environment" in fails["missing output bucket"].stderr
    assert "PDGEN_S3_ENDPOINT" in fails["endpoint down"].stderr  # refused at once, by name


# -- the spec cannot carry credentials (pure, fast) ----------------------------------------------

SECRET = SENTINELS["AWS_SECRET_ACCESS_KEY"]
BASE = {"name": "x", "catalog": {"uri": "s3://cat/p/"}, "output": {"uri": "s3://out/p/"}}


@pytest.mark.parametrize("where", [
    ("aws_secret_access_key",), ("output", "aws_secret_access_key"), ("catalog", "aws_access_key_id"),
    ("output", "storage_options"), ("catalog", "credentials"), ("model", "token"),
    ("output", "password"), ("s3", "secret"),
], ids=lambda w: ".".join(w))
def test_spec_refuses_credentials_without_echoing_them(where):
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    target = d
    for k in where[:-1]:
        target = target.setdefault(k, {})
    target[where[-1]] = SECRET if where[-1] != "storage_options" else {"AWS_SECRET_ACCESS_KEY": SECRET}
    with pytest.raises(SpecError) as ei:
        spec_from_dict(d)
    msg = str(ei.value)
    assert ".".join(where[:2]) in msg or where[0] == "s3" and "s3:" in msg
    assert SECRET not in msg and "Zq9xW3vK" not in msg, msg


@pytest.mark.parametrize("field", ["catalog.uri", "output.uri", "model.source"])
def test_spec_refuses_credentials_in_uris(field):
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    sec, key = field.split(".")
    d.setdefault(sec, {})[key] = f"s3://AKIAPDGENSENTINEL7Q3Z:{SECRET}@bucket/prefix/"
    with pytest.raises(SpecError) as ei:
        spec_from_dict(d)
    msg = str(ei.value)
    assert field in msg and "credentials" in msg
    assert SECRET not in msg and "AKIAPDGENSENTINEL7Q3Z" not in msg, msg


def test_validate_command_does_not_echo_a_credential(tmp_path):
    from typer.testing import CliRunner

    from pdgen_core.cli import app

    p = tmp_path / "spec.yaml"
    p.write_text(f"name: x\ncatalog: {{uri: s3://cat/p/}}\noutput:\n  uri: s3://out/p/\n"
                 f"  aws_secret_access_key: '{SECRET}'\n")
    r = CliRunner().invoke(app, ["validate", str(p), "--no-check-data"])
    assert r.exit_code == 2
    assert "credentials never go in a spec" in r.output and SECRET not in r.output


def test_log_redaction_reaches_nested_values(monkeypatch):
    """A secret inside a dict or list logged as one value is redacted too."""
    import structlog

    from pdgen_core import log

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    buf = io.StringIO()
    monkeypatch.setattr(log, "_configured", False)
    log.configure(json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buf))
    try:
        lg = log.get_logger(run_id="r")
        lg.info("opts", opts={"AWS_SECRET_ACCESS_KEY": SECRET}, items=[f"k={SECRET}"],
                msg=f"failed with {SECRET}")
        try:
            raise OSError(f"denied for {SECRET}")
        except OSError:
            lg.exception("boom")
    finally:
        monkeypatch.setattr(log, "_configured", False)
    out = buf.getvalue()
    assert "opts" in out and "boom" in out and "[redacted]" in out
    assert SECRET not in out and "Zq9xW3vK" not in out, out
