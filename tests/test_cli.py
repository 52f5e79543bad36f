"""The `pdgen` command line: exit codes and messages (no engine)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from pdgen_core.cli import app

runner = CliRunner()


def write_spec(tmp_path, catalog, **over):
    d = {"name": "cli", "catalog": {"uri": str(catalog), "columns": {"sku": "id", "title": "name"}},
         "model": {"source": "pdgen-tiny"}, "output": {"uri": str(tmp_path / "out")}}
    d.update(over)
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_validate_ok_and_every_problem(tmp_path):
    cat = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a"], "name": ["x"]}), cat)
    ok = runner.invoke(app, ["validate", str(write_spec(tmp_path, cat))])
    assert ok.exit_code == 0 and "ok" in ok.stdout
    bad = runner.invoke(app, ["validate", str(write_spec(tmp_path, cat, mode="later", tasks=["poem"]))])
    assert bad.exit_code == 2
    assert "mode" in bad.stderr and "tasks" in bad.stderr and "fix:" in bad.stderr


def test_validate_names_a_missing_column_and_the_mapping(tmp_path):
    cat = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a"], "product": ["x"]}), cat)
    r = runner.invoke(app, ["validate", str(write_spec(tmp_path, cat))])
    assert r.exit_code == 2
    assert "'name'" in r.stderr and "catalog.columns.title" in r.stderr and "product" in r.stderr


def test_synth_catalog_command(tmp_path):
    r = runner.invoke(app, ["synth-catalog", "--rows", "50", "--out", str(tmp_path / "cat"), "--bad-rows", "3"])
    assert r.exit_code == 0, r.stdout
    files = sorted((tmp_path / "cat").glob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == 53


def test_versions_on_missing_table_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["versions", str(tmp_path / "nothing"), "--task", "description"])
    assert r.exit_code == 2 and "no content table" in r.stderr


def test_storage_failure_after_work_began_names_the_resume_command(tmp_path, monkeypatch):
    """A run that failed on storage mid-way says which run to resume and how; a failure in
    preflight (nothing staged) does not."""
    import pdgen_core.pipeline as pipeline

    spec = tmp_path / "job.yaml"
    cat = tmp_path / "cat.parquet"
    pq.write_table(pa.table({"sku": ["a"], "title": ["T"], "price": [1.0]}), cat)
    spec.write_text(yaml.safe_dump({"name": "x", "catalog": {"uri": str(cat)}, "tasks": ["description"],
                                    "model": {"source": "pdgen-tiny"}, "output": {"uri": str(tmp_path / "out")}}))

    def began(self):
        self._began = True
        raise OSError("When uploading part for key 'out/_staging/...': AWS Error SLOW_DOWN (503)")

    monkeypatch.setattr(pipeline.GenerationRun, "_run", began)
    r = CliRunner().invoke(app, ["run", str(spec), "--run-id", "r-42"])
    assert r.exit_code == 2
    assert "error: storage:" in r.output and "pdgen run SPEC --resume r-42" in r.output

    def preflight(self):
        raise OSError("bucket does not exist")

    monkeypatch.setattr(pipeline.GenerationRun, "_run", preflight)
    r = CliRunner().invoke(app, ["refresh", str(spec)])
    assert r.exit_code == 2 and "error: storage:" in r.output and "--resume" not in r.output


def test_refresh_off_a_terminal_prints_exactly_one_line(tmp_path, monkeypatch):
    """A scheduler's refresh prints one line on stdout however many tasks (issue 20: the line
    wrapped over three at the console's 80 columns)."""
    import datetime as dt
    import time

    import pdgen_core.cli.run as run_cli
    from pdgen_core.run_record import Counts, build_record
    from pdgen_core.spec import load_spec

    cat = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a"], "name": ["x"]}), cat)
    spec_path = write_spec(tmp_path, cat, tasks=["description", "blurb", "ad_copy", "faq", "social_post"])
    c = Counts()
    for task in load_spec(spec_path).tasks:
        c.add(task, "accepted", 1234)
        c.add(task, "unchanged", 98765)
    record = build_record(load_spec(spec_path), "20261201T000000Z-abcdef", c, dt.datetime.now(dt.timezone.utc),
                          time.monotonic(), {}, "m", 1.0, [])
    monkeypatch.setattr(run_cli, "_run", lambda *a, **k: record)
    r = runner.invoke(app, ["refresh", str(spec_path)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and len(lines[0]) > 200, lines
    assert lines[0].startswith("run 20261201T000000Z-abcdef: description: 1234 regenerated")


def test_verbose_flag_puts_library_chatter_back_on_stderr(tmp_path, monkeypatch):
    """``pdgen --verbose CMD`` sets PDGEN_VERBOSE for the command: ``log.quiet_libraries`` then
    leaves Ray's, vLLM's and the warnings' handlers alone (no library log file)."""
    from pdgen_core.log import quiet_libraries
    from pdgen_core.settings import get_settings

    # setenv, not delenv: monkeypatch restores what it saw first, so the "1" the command sets
    # cannot outlive this test (a delenv of an unset name records nothing, and a later delenv
    # recorded "1": every later test's subprocess then ran verbose)
    monkeypatch.setenv("PDGEN_VERBOSE", "0")
    cat = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a"], "name": ["x"]}), cat)
    r = runner.invoke(app, ["--verbose", "validate", str(write_spec(tmp_path, cat)), "--no-check-data"])
    assert r.exit_code == 0, r.output
    import os

    assert os.environ.get("PDGEN_VERBOSE") == "1" and get_settings().verbose
    assert quiet_libraries() is None
    monkeypatch.setenv("PDGEN_VERBOSE", "0")
    assert not get_settings().verbose


def test_native_stderr_goes_to_the_library_log_and_python_stderr_stays(tmp_path):
    """Ray's C++ core worker writes to file descriptor 2 past every logger (issue 20: its
    ``core_worker.cc`` line was the one foreign line left on a quiet run's stderr). In a ``pdgen``
    process fd 2 becomes the library log; Python's ``sys.stderr`` (pdgen's events, errors,
    tracebacks) still reaches the caller, and a child process's native writes follow fd 2."""
    import os
    import subprocess
    import sys

    script = (
        "import os, subprocess, sys\n"
        "from pdgen_core import log\n"
        "log.allow_native_redirect()\n"
        "path = log.native_stderr_to_library_log()\n"
        "assert log.native_stderr_to_library_log() == path  # once\n"
        "os.write(2, b'[2026-12-02 12:00:00,000 E 1 1] core_worker.cc:1: native\\n')\n"
        "subprocess.run(['sh', '-c', 'echo child-native >&2'])\n"
        "print('python-stderr', file=sys.stderr, flush=True)\n"
        "print(path)\n"
        "raise SystemExit('error: still seen')\n")
    env = {**os.environ, "PDGEN_CACHE_DIR": str(tmp_path), "PDGEN_VERBOSE": "0"}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["python-stderr", "error: still seen"], r.stderr
    logged = open(r.stdout.strip()).read()
    assert "core_worker.cc:1: native" in logged and "child-native" in logged, logged
    # --verbose: nothing moves
    r = subprocess.run([sys.executable, "-c", script.replace("raise SystemExit('error: still seen')\n", "")],
                       capture_output=True, text=True, env={**env, "PDGEN_VERBOSE": "1"}, timeout=120)
    assert "core_worker.cc:1: native" in r.stderr and "child-native" in r.stderr and r.stdout.strip() == "None"


def test_cli_runner_never_hands_over_its_stderr(tmp_path):
    """Typer's CliRunner (and pytest) replace ``sys.stderr``: the app's callback must not let a
    later ``init_ray`` in this process take file descriptor 2."""
    from pdgen_core import log

    cat = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a"], "name": ["x"]}), cat)
    r = runner.invoke(app, ["validate", str(write_spec(tmp_path, cat)), "--no-check-data"])
    assert r.exit_code == 0, r.output
    assert log._native_quiet is False and log.native_stderr_to_library_log() is None
