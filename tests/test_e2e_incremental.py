"""Incremental refresh, changes feed, tombstones, and resume after a driver SIGKILL, against the
local S3 endpoint with the real engine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from pdgen_core import storage
from pdgen_core.pipeline import GenerationRun, run_job
from pdgen_core.spec import spec_from_dict
from pdgen_core.stages.commit import open_table
from pdgen_core.synth import make_catalog, make_reviews

pytestmark = [pytest.mark.e2e]
N = 100


def put(uri: str, table: pa.Table) -> None:
    loc = storage.resolve(uri)
    pq.write_table(table, loc.path, filesystem=loc.fs)


def spec_dict(bucket: str, **over) -> dict:
    d = {
        "name": "refresh",
        "catalog": {"uri": f"{bucket}/catalog/", "currency": "USD",
                    "columns": {"sku": "product_id", "title": "product_name", "price": "price_usd",
                                "brand": "brand", "category": "category"}},
        "reviews": {"uri": f"{bucket}/reviews/", "columns": {"sku": "product_id", "text": "review_text",
                                                             "rating": "rating"}},
        "tasks": ["description", "blurb", "review_digest"],
        "output": {"uri": f"{bucket}/out/"}, "mode": "incremental",
        "model": {"source": "pdgen-tiny", "max_model_len": 1024},
        "sampling": {"max_tokens": 16}, "guardrails": {"min_chars": 1, "max_attempts": 1},
        "resources": {"batch_size": 64},
    }
    d.update(over)
    return d


def current(out: str, task: str) -> dict[str, dict]:
    t = open_table(storage.resolve(out).child("content", task))
    return {} if t is None else {r["sku"]: r for r in t.to_pyarrow_table().to_pylist()}


@pytest.fixture(scope="module")
def refreshed(tiny_service, s3):
    s3.create_bucket("e2e-incr")
    bucket = "s3://e2e-incr"
    cat = make_catalog(N, seed=21)
    put(f"{bucket}/catalog/c.parquet", cat)
    put(f"{bucket}/reviews/r.parquet", make_reviews(cat, per_sku=(3, 5)))
    spec = spec_from_dict(spec_dict(bucket))
    first = run_job(spec)
    before = {t: current(spec.output.uri, t) for t in spec.tasks}
    # change 1% of prices (one sku)
    prices = cat.column("price_usd").to_pylist()
    prices[7] = round(prices[7] + 10.0, 2)
    put(f"{bucket}/catalog/c.parquet", cat.set_column(cat.schema.get_field_index("price_usd"), "price_usd",
                                                      pa.array(prices)))
    second = run_job(spec)
    return spec, cat, first, second, before


def test_first_run_generates_everything(refreshed):
    spec, cat, first, _, before = refreshed
    assert first["engine"]["kind"] == "service"  # the session's: no engine actor started for it
    for t in ("description", "blurb", "review_digest"):
        v = first["counts"]["by_task"][t]
        assert v["unchanged"] == 0 and v["planned"] == N == v["accepted"] + v["rejected"]
    # every task has its (published) table, even one the guard rejected every text of
    from pdgen_core import versions

    assert first["publish"]["published"]
    for t in spec.tasks:
        table = open_table(storage.resolve(spec.output.uri).child("content", t))
        assert table is not None and first["tables"][f"content/{t}"] is not None
        assert versions.read_pointer(spec.output.uri, t)[0]["version"] == table.version()
    # a resume of an id that never ran is refused before any work, naming the runs that exist
    from pdgen_core.run_record import RunNotFound

    with pytest.raises(RunNotFound, match="no run 'no-such-run'"):
        run_job(spec, run_id="no-such-run", resume=True)


def test_one_percent_price_change_regenerates_exactly_those_rows(refreshed):
    spec, cat, first, second, before = refreshed
    changed = cat.column("product_id")[7].as_py()
    by = second["counts"]["by_task"]
    for t in ("description", "blurb"):
        assert by[t]["accepted"] + by[t]["rejected"] == 1, (t, by[t])
        assert by[t]["unchanged"] == N - 1
        after = current(spec.output.uri, t)
        if changed in after:
            assert after[changed]["run_id"] == second["run_id"]
        assert {s for s, r in after.items() if r["run_id"] == second["run_id"]} <= {changed}
    # review digests do not read the price: untouched
    assert by["review_digest"]["accepted"] + by["review_digest"]["rejected"] == 0
    assert current(spec.output.uri, "review_digest") == before["review_digest"]


def test_nothing_to_do_and_changes_feed_and_tombstone(refreshed, tmp_path):
    spec, cat, first, second, _ = refreshed
    again = run_job(spec)
    assert all(v["accepted"] + v["rejected"] == 0 for v in again["counts"]["by_task"].values())
    # a changes feed names one sku with a new price: only it is planned
    target = cat.column("product_id")[3].as_py()
    feed = storage.resolve("s3://e2e-incr/feeds/prices.parquet")
    put(feed.uri, pa.table({"product_id": [target], "price_usd": [999.0]}))
    fed = run_job(spec, changes=feed.uri)
    d = fed["counts"]["by_task"]["description"]
    assert d["planned"] == 1 and d["accepted"] + d["rejected"] == 1
    assert fed["counts"]["read"] == 1
    # a sku leaves the catalog: tombstoned from the current version, kept in history. The
    # catalog also takes the fed price, so nothing else changed: no engine starts for this run.
    gone = cat.column("product_id")[0].as_py()
    cur = pq.read_table(storage.resolve("s3://e2e-incr/catalog/c.parquet").path,
                        filesystem=storage.resolve("s3://e2e-incr/catalog/").fs)
    cur = cur.set_column(cur.schema.get_field_index("price_usd"), "price_usd",
                         pc.if_else(pc.equal(cur.column("product_id"), target), 999.0, cur.column("price_usd")))
    put("s3://e2e-incr/catalog/c.parquet", cur.filter(pc.not_equal(cur.column("product_id"), gone)))
    tomb = spec_from_dict(spec_dict("s3://e2e-incr", on_delete="tombstone"))
    had = gone in current(tomb.output.uri, "description")
    rec = run_job(tomb)
    assert all(v["accepted"] + v["rejected"] == 0 for v in rec["counts"]["by_task"].values()), rec["counts"]
    assert rec["counts"]["deleted"]["description"] == (1 if had else 0)
    assert gone not in current(tomb.output.uri, "description")
    if had:  # pdgen-tiny's text is mostly rejected by the guard: a tombstone needs committed text
        assert gone in {r["sku"] for r in open_table(storage.resolve(tomb.output.uri).child("content", "description"),
                                                     version=fed["tables"]["content/description"]).to_pyarrow_table().to_pylist()}


def test_sigkill_driver_then_resume_commits_every_planned_item_once(tiny_service, s3, tmp_path):
    s3.create_bucket("e2e-kill")
    # Enough rows (batches of 8, one at a time) that the run is still generating when its first
    # staged file appears: with 120 a loaded machine sometimes finished and committed between two
    # polls, and the kill was no longer mid-run.
    cat = make_catalog(240, seed=5)
    put("s3://e2e-kill/catalog/c.parquet", cat)
    base = spec_dict("s3://e2e-kill", tasks=["description"], reviews=None,
                     resources={"batch_size": 8, "max_concurrent_batches": 1})
    base["sampling"] = {"max_tokens": 24}
    killed = {**base, "output": {"uri": "s3://e2e-kill/killed/"}}
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump(killed))
    run_id = "kill-test-run"
    # The killed driver joins the session's Ray (as a job's driver joins a cluster) and hands its
    # batches to the session's generation service, which outlives it as it would on a cluster.
    import ray

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
           "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    proc = subprocess.Popen([sys.executable, "-m", "pdgen_core.cli", "run", str(p), "--run-id", run_id],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    staged = storage.resolve("s3://e2e-kill/killed/").child("_staging", run_id, "generated")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not storage.list_files(staged, ".parquet"):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    n_staged = len(storage.list_files(staged, ".parquet"))
    assert n_staged >= 1
    os.kill(proc.pid, signal.SIGKILL)  # the driver only
    proc.wait()
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGKILL) if _alive_group(proc.pid) else None
    assert open_table(storage.resolve("s3://e2e-kill/killed/").child("content", "description")) is None

    resumed = run_job(spec_from_dict(killed), run_id=run_id, resume=True)
    assert resumed["counts"]["resumed"] >= 1  # rows staged before the kill were not generated again
    # What a clean run commits: every planned item once, with its input fingerprint, either in the
    # content table or rejected by the guards. The plan needs no engine (read, validate, fingerprint).
    planned = {r["sku"]: r["input_fingerprint"] for r in
               GenerationRun(spec_from_dict(killed)).planned_items().select_columns(["sku", "input_fingerprint"]).take_all()}
    assert len(planned) == cat.num_rows
    a = current("s3://e2e-kill/killed/", "description")
    rej = open_table(storage.resolve("s3://e2e-kill/killed/").child("rejects", "description"))
    guarded = {} if rej is None else {r["sku"]: r["input_fingerprint"] for r in rej.to_pyarrow_table().to_pylist()}
    assert not set(a) & set(guarded) and set(a) | set(guarded) == set(planned)
    assert {k: r["input_fingerprint"] for k, r in a.items()} == {k: planned[k] for k in a}
    assert guarded == {k: planned[k] for k in guarded}
    ta = open_table(storage.resolve("s3://e2e-kill/killed/").child("content", "description")).to_pyarrow_table()
    assert ta.num_rows == len(set(ta.column("sku").to_pylist()))  # no duplicates
    # resuming a committed run is a no-op returning the same record
    assert run_job(spec_from_dict(killed), run_id=run_id, resume=True)["run_id"] == run_id


def _alive_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
