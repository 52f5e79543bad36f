"""S3 faults: a job whose S3 endpoint is the fault-injecting proxy (``pdgen_core.testing.faults``).

Transient faults (503 SlowDown, resets, latency) are absorbed by the retry settings of botocore,
pyarrow and delta-rs: the run completes with nothing lost or duplicated. Persistent faults fail
the run cleanly: no new table version, no run record.

Each job runs as ``pdgen run`` in a subprocess (its own Ray, whose workers inherit the proxy as
their endpoint), against the session's local S3 server.
"""

from __future__ import annotations

import json
import os
import time

import pyarrow.parquet as pq
import pytest

from pdgen_core import storage
from pdgen_core.testing import chaos
from pdgen_core.testing.faults import FaultConfig, FaultProxy, fault_proxy
from pdgen_core.stages.commit import current_version
from pdgen_core.synth import make_catalog

COLUMNS = {"sku": "product_id", "title": "product_name", "price": "price_usd", "brand": "brand",
           "category": "category", "color": "color"}


def spec_for(catalog_uri: str, output_uri: str, **over) -> dict:
    d = {
        "name": "s3-faults",
        "catalog": {"uri": catalog_uri, "columns": COLUMNS, "currency": "USD"},
        "tasks": ["description"], "model": {"source": "smollm2-135m-instruct"}, "output": {"uri": output_uri},
        "mode": "full",
        "guardrails": {"min_chars": 1, "max_attempts": 1},
        "resources": {"batch_size": 8},
    }
    d.update(over)
    return d


def write_catalog(s3, bucket: str, rows: int, bad: int = 4):
    s3.create_bucket(bucket)
    t = make_catalog(rows, seed=7, bad_rows=bad)
    for i, part in enumerate((t.slice(0, t.num_rows // 2), t.slice(t.num_rows // 2))):
        loc = storage.resolve(f"s3://{bucket}/catalog/part-{i}.parquet")
        pq.write_table(part, loc.path, filesystem=loc.fs)
    return t, f"s3://{bucket}/catalog/"


def proxy_env(proxy: FaultProxy) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": proxy.endpoint, "PDGEN_S3_ENDPOINT": proxy.endpoint}


def run_through_proxy(s3, name: str, rows: int, config: FaultConfig, expect_ok: bool = True):
    table, cat = write_catalog(s3, name, rows)
    out = f"s3://{name}/out/"
    with fault_proxy(s3.endpoint, config) as proxy:
        run = chaos.run_cli(spec_for(cat, out), proxy_env(proxy), run_id=f"{name}-1", timeout=900)
        stats = proxy.stats()
    if expect_ok:
        assert run.rc == 0, run.output[-4000:]
    return table, out, run, stats


def check_nothing_lost(scenario: str, table, out: str, run, stats: dict) -> chaos.Audit:
    a = chaos.audit(out, "description", run.record, chaos.expected_keys(table, COLUMNS))
    chaos.record(scenario, rows=a.rows, lost=a.lost, duplicated=a.duplicated,
                 result="ok" if a.ok else "; ".join(a.problems) or "lost/duplicated",
                 wall_s=run.wall_s, faults={k: stats[k] for k in
                                            ("slowdown", "reset", "lost_response", "latency")},
                 requests=stats["requests"])
    assert stats["injected"] > 0, stats  # the faults really happened
    assert a.ok, (a, run.record["counts"])
    assert run.record["counts"]["accepted"] > 0, run.record["counts"]  # texts really went through
    assert a.committed == run.record["counts"]["accepted"] and a.rows == run.record["counts"]["valid"]
    return a


def test_proxy_injects_what_it_is_told_and_clients_retry_through_it(s3):
    """The proxy itself: S3's 503 XML body, resets, per-key determinism, counts; boto3 and
    pyarrow (the project's retry settings) get every object through ~30% faults."""
    import boto3
    import botocore.exceptions

    s3.create_bucket("faults-unit")
    cfg = FaultConfig(p503=0.15, p_reset=0.05, p_latency=0.1, latency_s=0.01, seed=5)
    with fault_proxy(s3.endpoint, FaultConfig(p503=1.0)) as proxy:
        raw = boto3.client("s3", endpoint_url=proxy.endpoint, region_name="us-east-1",
                           aws_access_key_id="k", aws_secret_access_key="s",
                           config=__import__("botocore.config").config.Config(retries={"max_attempts": 1}))
        with pytest.raises(botocore.exceptions.ClientError) as ei:
            raw.get_object(Bucket="faults-unit", Key="x")
        assert ei.value.response["Error"]["Code"] == "SlowDown"
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        proxy.configure(FaultConfig(p_reset=1.0))
        with pytest.raises(botocore.exceptions.BotoCoreError, match="Connection was closed|reset"):
            raw.get_object(Bucket="faults-unit", Key="x")
        proxy.configure(cfg)
        env = {"AWS_ENDPOINT_URL": proxy.endpoint, "PDGEN_S3_ENDPOINT": proxy.endpoint}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            client = storage.boto3_client()
            for i in range(12):
                client.put_object(Bucket="faults-unit", Key=f"b/{i}", Body=b"x" * i)
            loc = storage.resolve("s3://faults-unit/p")
            for i in range(6):
                storage.write_bytes(loc.child(f"{i}.bin"), b"y" * 100)
            assert len(storage.list_files(loc)) == 6
            assert [client.get_object(Bucket="faults-unit", Key=f"b/{i}")["Body"].read()
                    for i in range(12)] == [b"x" * i for i in range(12)]
        finally:
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        st = proxy.stats()
    assert st["slowdown"] > 0 and st["reset"] > 0 and st["latency"] > 0
    assert st["injected"] == st["slowdown"] + st["reset"] + st["lost_response"]
    # deterministic for a seed, whatever the interleaving: the n-th request of one (method, path)
    # meets the same fault
    from pdgen_core.testing.faults import _State

    a, b = _State(s3.endpoint, cfg), _State(s3.endpoint, cfg)
    seq = [("GET", f"/k/{i % 4}") for i in range(40)]
    in_order = [a.decide(*r)[0] for r in seq]
    grouped = {i: b.decide(*seq[i])[0] for i in sorted(range(40), key=lambda i: (seq[i][1], i))}
    assert in_order == [grouped[i] for i in range(40)] and len(set(in_order)) > 1
    with pytest.raises(ValueError):
        FaultConfig(p503=0.8, p_reset=0.5)


def test_error_body_on_a_small_ranged_read_is_retried_on_the_driver(s3):
    """A 503's XML body does not fit the buffer pyarrow sizes to a small ranged GET (a column
    chunk of a few bytes); the AWS SDK reports ``INTERNAL_FAILURE ... Failed to flush response
    stream`` and does not retry it (apache/doris#66557 traces the same in the C++ SDK). The
    driver's reads go through ``storage.retry_io``; Ray Data's tasks retry the same class."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    s3.create_bucket("faults-small-ranges")
    base = storage.resolve("s3://faults-small-ranges/f.parquet")
    # tiny column chunks beside a big one: reading "a" and "s" asks for a few bytes each
    pq.write_table(pa.table({"a": [1, 2, 3], "s": ["x", "y", "z"], "big": ["q" * 100_000] * 3}),
                   base.path, filesystem=base.fs)
    # 503 on half of the first three GETs of each key (its footer, then its column chunks)
    plain_failures, retried, injected = 0, 0, 0
    for seed in range(12):
        with fault_proxy(s3.endpoint, FaultConfig(p503=0.5, methods=("GET",), seed=seed, max_per_key=3)) as proxy:
            env = {"AWS_ENDPOINT_URL": proxy.endpoint, "PDGEN_S3_ENDPOINT": proxy.endpoint}
            old = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                loc = storage.resolve(base.uri)

                def read():
                    return pads.dataset([loc.path], filesystem=loc.fs).to_table(columns=["a", "s"])

                try:
                    read()
                except OSError as exc:
                    assert storage.is_transient_io_error(exc), exc  # the class retry_io retries
                    plain_failures += 1
                t = storage.retry_io(read, "test read", backoff_s=0.01)  # the default 4 attempts
                assert t.column("s").to_pylist() == ["x", "y", "z"]
                retried += 1
            finally:
                for k, v in old.items():
                    os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
            injected += proxy.stats()["slowdown"]
    assert retried == 12 and injected > 0
    assert plain_failures > 0, ("pyarrow retried every error body itself: the gap this test "
                                "covers may be fixed upstream (then retry_io is only a backstop)")


def test_retry_io_retries_only_transient_errors_and_is_bounded():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("AWS Error INTERNAL_FAILURE during GetObject operation: "
                          "Failed to flush response stream (eof: 0, bad: 1)")
        return "ok"

    assert storage.retry_io(flaky, "t", backoff_s=0) == "ok" and len(calls) == 3

    def wrapped():  # delta-rs wraps the reader's error: the cause chain is searched
        try:
            raise OSError("AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 56")
        except OSError as inner:
            raise RuntimeError("External error: Arrow error") from inner

    with pytest.raises(RuntimeError) as ei:
        wrapped()
    assert storage.is_transient_io_error(ei.value)
    calls.clear()

    def always():
        calls.append(1)
        raise OSError("AWS Error INTERNAL_FAILURE during GetObject operation: x")

    with pytest.raises(OSError):
        storage.retry_io(always, "t", attempts=3, backoff_s=0)
    assert len(calls) == 3
    calls.clear()

    def denied():
        calls.append(1)
        raise OSError("AWS Error ACCESS_DENIED during GetObject operation")

    with pytest.raises(OSError):
        storage.retry_io(denied, "t", backoff_s=0)
    assert len(calls) == 1  # not transient: no retry


def test_list_files_repeats_a_listing_that_fails_transiently(tmp_path):
    """Every listing (the commit phase's staged files, the catalog's files) goes through
    ``storage.list_files``, which repeats a transient failure and lets other errors through."""
    import types

    import pyarrow.fs as pafs

    (tmp_path / "a.parquet").write_bytes(b"x")
    (tmp_path / "_staging").mkdir()
    (tmp_path / "_staging" / "b.parquet").write_bytes(b"x")
    calls = []

    class Flaky:  # a filesystem whose first two listings fail as S3's 503 SlowDown does
        def __init__(self, error):
            self.local, self.error = pafs.LocalFileSystem(), error

        def get_file_info(self, what):
            calls.append(what)
            if len(calls) <= 2:
                raise OSError(self.error)
            return self.local.get_file_info(what)

    loc = types.SimpleNamespace(fs=Flaky("AWS Error SLOW_DOWN during ListObjectsV2 operation: slow down"),
                                path=str(tmp_path), uri=f"file://{tmp_path}")
    assert storage.list_files(loc, ".parquet") == [str(tmp_path / "a.parquet")]
    assert len(calls) == 4  # two failed attempts, then the folder's info and its listing
    calls.clear()
    loc.fs = Flaky("AWS Error ACCESS_DENIED during ListObjectsV2 operation")
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        storage.list_files(loc)
    assert len(calls) == 1


@pytest.mark.e2e
def test_transient_faults_lose_nothing(s3):
    """~10% 503 SlowDown, some resets and latency on every request: the run completes and what it
    committed balances exactly with the catalog."""
    cfg = FaultConfig(p503=0.10, p_reset=0.03, p_latency=0.10, latency_s=0.1, seed=11)
    table, out, run, stats = run_through_proxy(s3, "faults-transient", 24, cfg)
    check_nothing_lost("s3: 10% 503 + 3% resets + latency", table, out, run, stats)


@pytest.mark.e2e
def test_persistent_503_fails_cleanly(s3):
    """Every request answered 503: the run stops at the preflight write probe with a storage
    error (exit 2), after the clients' bounded retries, and nothing is committed."""
    table, cat = write_catalog(s3, "faults-down", 10)
    out = "s3://faults-down/out/"
    t0 = time.monotonic()
    with fault_proxy(s3.endpoint, FaultConfig(p503=1.0)) as proxy:
        # it stops before any generation: the small model is enough
        run = chaos.run_cli(spec_for(cat, out, model={"source": "pdgen-tiny"}), proxy_env(proxy),
                            run_id="down-1", timeout=600)
        stats = proxy.stats()
    assert run.rc == 2, run.output[-3000:]
    assert "error: storage:" in run.stderr, run.stderr[-2000:]
    assert "SlowDown" in run.stderr or "503" in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in chaos.driver_lines(run.stderr)
    assert current_version(storage.resolve(out).child("content", "description")) is None
    assert storage.list_files(storage.resolve(out), hidden=True) == []  # nothing at all
    chaos.record("s3: 100% 503 (fails cleanly)", rows=0, result="ok", wall_s=time.monotonic() - t0,
                 faults={"slowdown": stats["slowdown"]})


@pytest.mark.chaos
def test_heavier_faults_and_lost_responses(s3):
    """25% 503, 5% resets, 5% lost responses (S3 acted, the client never heard): retries of
    writes that already happened must not duplicate anything."""
    cfg = FaultConfig(p503=0.25, p_reset=0.05, p_lost_response=0.05, p_latency=0.2,
                      latency_s=0.2, seed=23)
    table, out, run, stats = run_through_proxy(s3, "faults-heavy", 60, cfg)
    check_nothing_lost("s3: 25% 503 + 5% resets + 5% lost responses", table, out, run, stats)


@pytest.mark.chaos
def test_commit_faults_leave_no_partial_version(s3):
    """A first run commits; a second run's Delta log writes all fail (the store is down at commit
    time): the second run fails, the table stays at the first run's version, no run record of the
    second run exists, and a third run without faults commits normally."""
    table, cat = write_catalog(s3, "faults-commit", 30)
    out = "s3://faults-commit/out/"
    with fault_proxy(s3.endpoint) as proxy:
        env = proxy_env(proxy)
        first = chaos.run_cli(spec_for(cat, out), env, run_id="commit-1")
        assert first.rc == 0, first.output[-3000:]
        assert first.record["counts"]["accepted"] > 0, first.record["counts"]
        content = storage.resolve(out).child("content", "description")
        v1 = current_version(content)
        proxy.configure(FaultConfig(p503=1.0, methods=("PUT", "POST"), path_regex=r"/_delta_log/"))
        second = chaos.run_cli(spec_for(cat, out), env, run_id="commit-2")
        stats = proxy.stats()
        assert second.rc != 0, second.output[-3000:]
        assert "Traceback" not in chaos.driver_lines(second.stderr), second.stderr[-3000:]
        assert "error: storage:" in second.stderr
        assert current_version(content) == v1
        assert not storage.exists(storage.resolve(out).child("runs", "commit-2.json"))
        rows = chaos.audit(out, "description", first.record, chaos.expected_keys(table, COLUMNS))
        proxy.configure(FaultConfig())
        third = chaos.run_cli(spec_for(cat, out), env, run_id="commit-3")
    assert third.rc == 0, third.output[-3000:]
    assert current_version(content) == v1 + 1, json.dumps(
        {k: (third.record or {}).get(k) for k in ("tables", "counts")}, default=str)
    a = chaos.audit(out, "description", third.record, chaos.expected_keys(table, COLUMNS))
    chaos.record("s3: delta log down at commit (no partial version)", rows=a.rows, lost=a.lost,
                 duplicated=a.duplicated, result="ok" if a.ok and rows.ok else "problems",
                 wall_s=first.wall_s + second.wall_s + third.wall_s,
                 faults={"slowdown": stats["slowdown"]})
    assert a.ok and rows.ok, (a, rows)


@pytest.mark.chaos
def test_lost_commit_response_is_not_committed_twice(s3):
    """The first PUT of every Delta log entry reaches S3 but its answer is lost (a reset after S3
    acted); the retry meets the conditional put's 412. The run must not commit twice: either it
    completes with one version per table, or it fails and ``--resume`` completes it, still with
    one version and no duplicate row."""
    table, cat = write_catalog(s3, "faults-lostcommit", 30)
    out = "s3://faults-lostcommit/out/"
    cfg = FaultConfig(p_lost_response=1.0, methods=("PUT",), path_regex=r"/_delta_log/\d+\.json$",
                      max_per_key=1)
    with fault_proxy(s3.endpoint, cfg) as proxy:
        env = proxy_env(proxy)
        run = chaos.run_cli(spec_for(cat, out), env, run_id="lost-1")
        stats = proxy.stats()
        resumed = None
        if run.rc != 0:
            assert "Traceback" not in chaos.driver_lines(run.stderr), run.stderr[-3000:]
            assert "error: storage:" in run.stderr, run.stderr[-3000:]
            proxy.configure(FaultConfig())
            resumed = chaos.run_cli(spec_for(cat, out), env, run_id="lost-1", args=("--resume", "lost-1"))
            assert resumed.rc == 0, resumed.output[-3000:]
    final = resumed or run
    content = storage.resolve(out).child("content", "description")
    from pdgen_core.stages.commit import open_table

    history = open_table(content).history()
    a = chaos.audit(out, "description", final.record, chaos.expected_keys(table, COLUMNS))
    chaos.record("s3: lost response on the Delta commit", rows=a.rows, lost=a.lost,
                 duplicated=a.duplicated, result="ok" if a.ok and len(history) == 1 else
                 f"versions {len(history)}; {a.problems}",
                 wall_s=run.wall_s + (resumed.wall_s if resumed else 0),
                 faults={"lost_response": stats["lost_response"]},
                 first_attempt_rc=run.rc, needed_resume=resumed is not None)
    assert stats["lost_response"] >= 1
    assert len(history) == 1, history  # one commit of the content table, not two
    assert a.ok, a
