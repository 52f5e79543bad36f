"""Commit, versions, diff, rollback, publish gate and concurrent commits, on Delta tables in the
local S3 server (no engine: rows are built here)."""

from __future__ import annotations

import datetime as dt
import threading
from functools import partial

import pyarrow as pa
import pytest

from pdgen_core import storage, versions
from pdgen_core.stages import commit


def rows(skus, text, run_id):
    now = dt.datetime.now(dt.timezone.utc)
    return pa.Table.from_pylist([
        {"sku": s, "locale": "en", "task": "description", "variant": "", "text": f"{text} {s}", "label": None,
         "input_fingerprint": f"fp-{text}-{s}", "template": "description/v1", "model": "m", "adapter": "",
         "sampling_hash": "h", "run_id": run_id, "generated_at": now, "tokens_in": 1, "tokens_out": 2,
         "attempts": 1, "_op": "upsert"} for s in skus], schema=commit.MERGE_SCHEMA)


def src(table):
    return lambda: pa.RecordBatchReader.from_batches(commit.MERGE_SCHEMA, table.to_batches())


def write_run(out: str, run_id: str, table, started: str = "2026-12-01T09:00:00+00:00") -> int:
    """A published run as the commit leaves it: its rows merged into content/description, a record."""
    v = commit.merge_content(storage.resolve(out).child("content", "description"), src(table), run_id)
    storage.write_json(storage.resolve(out).child("runs", f"{run_id}.json"),
                       {"run_id": run_id, "started_at": started, "tables": {"content/description": v}})
    return v


def test_merge_is_idempotent_per_run(bucket):
    out = f"{bucket}/o"
    loc = storage.resolve(out).child("content", "description")
    v0 = commit.merge_content(loc, src(rows(["a", "b"], "one", "r1")), "r1")
    assert commit.merge_content(loc, src(rows(["a", "b"], "one", "r1")), "r1") == v0  # resumed: no-op
    v1 = commit.merge_content(loc, src(rows(["b", "c"], "two", "r2")), "r2")
    assert v1 == v0 + 1
    t = {r["sku"]: r for r in commit.open_table(loc).to_pyarrow_table().to_pylist()}
    assert sorted(t) == ["a", "b", "c"] and t["a"]["run_id"] == "r1" and t["b"]["run_id"] == "r2"


def test_tombstone_deletes_in_the_same_version(bucket):
    loc = storage.resolve(f"{bucket}/o").child("content", "description")
    commit.merge_content(loc, src(rows(["a", "b"], "one", "r1")), "r1")
    gone = rows(["a"], "x", "r2")
    gone = gone.set_column(gone.schema.get_field_index("_op"), "_op", pa.array(["delete"]))
    both = pa.concat_tables([rows(["c"], "two", "r2"), gone])
    v = commit.merge_content(loc, src(both), "r2")
    assert sorted(r["sku"] for r in commit.open_table(loc).to_pyarrow_table().to_pylist()) == ["b", "c"]
    assert "a" in [r["sku"] for r in commit.open_table(loc, v - 1).to_pyarrow_table().to_pylist()]


def stage_run(out: str, run_id: str, table, started: str = "2026-12-01T10:00:00+00:00") -> int:
    """A staged run as the commit leaves it: its rows in staged/<run_id>/description, a record."""
    loc = commit.staged_table(storage.resolve(out), run_id, "description")
    v = commit.stage_content(loc, src(table), run_id)
    commit.ensure_content(storage.resolve(out).child("content", "description"))
    storage.write_json(storage.resolve(out).child("runs", f"{run_id}.json"),
                       {"run_id": run_id, "started_at": started, "status": "staged",
                        "tables": {f"staged/{run_id}/description": v}})
    return v


def test_versions_diff_show_rollback_and_publish(bucket):
    out = f"{bucket}/o"
    v1 = write_run(out, "r1", rows(["a", "b", "c"], "one", "r1"))
    versions.sync_pointer(out, "description")
    stage_run(out, "r2", rows(["b", "d"], "two", "r2"), started="2026-12-01T11:00:00+00:00")
    # staged: the content table's latest version is still r1's, for every reader (Polars on S3)
    import polars as pl

    def polars_texts():
        opts = {k: v for k, v in storage.delta_options().items() if k.startswith("AWS_")}  # as the README
        df = pl.read_delta(f"{out}/content/description", storage_options=opts)
        return dict(zip(df["sku"], df["text"]))

    assert polars_texts() == {"a": "one a", "b": "one b", "c": "one c"}
    assert versions.published_version(out, "description") == v1
    got, seen = versions.show(out, "description", "b")
    assert seen == v1 and got[0]["text"] == "one b"
    assert versions.staged_runs(out, "description") == ["r2"]
    assert versions.promote(out, "r2") == {"description": v1 + 1}
    v2 = v1 + 1
    assert versions.published_version(out, "description") == v2
    assert polars_texts() == {"a": "one a", "b": "two b", "c": "one c", "d": "two d"}
    assert versions.read_pointer(out, "description")[0]["run_id"] == "r2"
    assert versions.promote(out, "r2") == {"description": v2}  # repeated: nothing committed twice
    assert versions.staged_runs(out, "description") == []
    latest, seen = versions.show(out, "description", "b")
    assert seen == v2 and latest[0]["text"] == "two b"
    d = versions.diff(out, "description", v1, v2)
    assert (d["added"], d["changed"], d["removed"]) == (1, 1, 0)
    assert d["samples"]["changed"][0]["key"] == ["b", "en", ""]
    assert (d["samples"]["changed"][0]["old"], d["samples"]["changed"][0]["new"]) == ("one b", "two b")
    hist = versions.versions(out, "description")
    assert [h["version"] for h in hist][-2:] == [v1, v2] and hist[-1]["published"]
    assert hist[-1]["promoted"] and {h["run_id"] for h in hist} >= {"r1", "r2"}
    v3 = versions.rollback(out, "description", v1)
    assert v3 == v2 + 1 and versions.published_version(out, "description") == v3
    ptr = versions.read_pointer(out, "description")[0]
    assert (ptr["version"], ptr["run_id"], ptr["restores"]) == (v3, "r1", v1)
    back, _ = versions.show(out, "description", "b")
    assert back[0]["text"] == "one b"
    with pytest.raises(versions.VersionError):
        versions.rollback(out, "description", 99)


def test_pointer_conditional_put_refuses_a_stale_writer(bucket):
    out = f"{bucket}/o"
    versions.publish(out, "description", 1, "r1")
    _, stale = versions.read_pointer(out, "description")
    versions.publish(out, "description", 2, "r2")
    with pytest.raises(versions.PublishConflict):
        versions.write_pointer(out, "description", {"version": 3}, stale)
    assert versions.published_version(out, "description") == 2


def test_concurrent_commits_never_corrupt(bucket):
    loc = storage.resolve(f"{bucket}/o").child("content", "description")
    commit.merge_content(loc, src(rows(["seed"], "zero", "r0")), "r0")
    errors, done = [], []

    def one(i):
        try:
            done.append(commit.merge_content(loc, src(rows([f"s{i}-{j}" for j in range(20)], "x", f"r{i}")), f"r{i}"))
        except Exception as exc:  # a clear conflict error is acceptable; corruption is not
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t = commit.open_table(loc).to_pyarrow_table()
    skus = t.column("sku").to_pylist()
    assert len(skus) == len(set(skus))  # no duplicates
    committed = {r for r in t.column("run_id").to_pylist()} - {"r0"}
    assert len(committed) == len(done) and len(done) + len(errors) == 4
    assert len(done) >= 1 and len(set(done)) == len(done)  # each commit its own version
    for e in errors:
        assert "conflict" in str(e).lower() or "commit" in str(e).lower()


@pytest.mark.parametrize("reader", ["driver", "ray"])
def test_merged_tables_read_back_with_plain_string_types(bucket, ray_local, reader, monkeypatch):
    """A Delta merge writes string_view columns; the plan's anti-join (a third run) and the
    report's per-run filter must work on them (both raised ArrowNotImplementedError before).
    Small tables are read on the driver, large ones by Ray Data: both paths."""
    import pyarrow.parquet as pq

    from pdgen_core import incremental as inc

    if reader == "ray":
        monkeypatch.setattr(inc, "SMALL_TABLE_BYTES", -1)

    from pdgen_core import incremental, report

    out = f"{bucket}/o"
    loc = storage.resolve(out).child("content", "description")
    write_run(out, "r1", rows(["a", "b", "c"], "one", "r1"))
    write_run(out, "r2", rows(["b"], "two", "r2"))  # a merge: this file is DataFusion's
    dt_ = commit.open_table(loc)
    kinds = {str(pq.read_schema(loc.fs.open_input_file(incremental._fs_path(u))).field("sku").type)
             for u in dt_.file_uris()}
    assert "string_view" in kinds, kinds  # the condition this test is about still occurs

    keys = incremental.current_keys(loc)
    assert all(f.type == pa.string() for f in keys.schema().base_schema)
    import ray

    work = ray.data.from_arrow(pa.table({
        "sku": ["a", "b", "d"], "locale": ["en"] * 3, "variant": [""] * 3,
        "input_fingerprint": ["fp-one-a", "fp-one-b", "fp-one-d"], "x": [1, 2, 3]}))
    left = sorted(r["sku"] for r in incremental.anti_join(work, keys).take_all())
    assert left == ["b", "d"]  # a unchanged; b changed by r2; d new

    got = report._rows(dt_, loc, "r2", ["sku", "text"])
    assert [(r["sku"], r["text"]) for r in got] == [("b", "two b")]
    assert len(report._rows(dt_, loc, None, ["sku"])) == 3


def test_plain_types_casts_only_view_columns():
    t = pa.table({"s": pa.array(["x", None], pa.string_view()), "b": pa.array([b"1", b"2"], pa.binary_view()),
                  "n": [1, 2], "l": pa.array(["p", "q"], pa.large_string())})
    got = storage.plain_types(t)
    assert got.schema.types == [pa.string(), pa.binary(), pa.int64(), pa.large_string()]
    assert got.column("s").to_pylist() == ["x", None]
    plain = pa.table({"n": [1]})
    assert storage.plain_types(plain) is plain


def test_guard_rejected_keys_are_the_guard_rejections_with_inputs(bucket, ray_local):
    """What a refresh must not regenerate: guard rejections (same inputs, same seed, same text),
    not engine errors (retried) nor catalog rows rejected before planning."""
    from pdgen_core import incremental

    loc = storage.resolve(f"{bucket}/o").child("rejects", "description")
    assert incremental.guard_rejected_keys(loc) is None
    now = dt.datetime.now(dt.timezone.utc)

    def rej(sku, stage, fp):
        return {"sku": sku, "task": "description", "locale": "en", "variant": "", "stage": stage,
                "reason": "r", "detail": None, "attempts": 1, "run_id": "r1", "rejected_at": now,
                "input_fingerprint": fp}

    old = pa.Table.from_pylist([rej("z", "guard", None)], schema=commit.REJECT_SCHEMA).drop_columns(
        ["input_fingerprint"])  # a table written before the column existed
    from deltalake import write_deltalake

    write_deltalake(loc.uri, old, storage_options=storage.table_options(loc))
    t = pa.Table.from_pylist([rej("a", "guard", "fa"), rej("b", "generate", "fb"),
                              rej("c", "validate", None), rej("d", "plan", "fd")], schema=commit.REJECT_SCHEMA)
    commit.append_rejects(loc, lambda: pa.RecordBatchReader.from_batches(t.schema, t.to_batches()), "r1")
    got = incremental.guard_rejected_keys(loc).take_all()
    assert [(r["sku"], r["input_fingerprint"]) for r in got] == [("a", "fa")]


def test_changes_feed_takes_the_catalogs_own_sku_column(bucket):
    import pyarrow.parquet as pq

    from pdgen_core import incremental

    loc = storage.resolve(f"{bucket}/feeds/prices.parquet")
    pq.write_table(pa.table({"product_id": ["P1"], "price_usd": [9.5]}), loc.path, filesystem=loc.fs)
    feed = incremental.read_changes(loc.uri, {"sku": "product_id", "price": "price_usd"})
    assert feed.column_names == ["sku", "price_usd"] and feed.column("sku").to_pylist() == ["P1"]
    with pytest.raises(ValueError, match="no 'sku' or 'item' column"):
        incremental.read_changes(loc.uri, {"sku": "item"})


# -- the publish gate end to end, on local Delta tables: the pipeline's own commit and finish on
# hand-staged generation rows (no engine), the CLI, and a Polars reader ------------------------

def spec_at(out, **over):
    from pdgen_core.spec import spec_from_dict

    d = {"name": "gate", "catalog": {"uri": str(out) + "/catalog.parquet"}, "tasks": ["description", "blurb"],
         "model": {"source": "pdgen-tiny"}, "output": {"uri": str(out)}}
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    return spec_from_dict(d)


def gen_row(run_id, task, sku, text, status="accepted", price=10.0, reason=None, variant=""):
    import json

    fields = {"title": f"Tent {sku}", "price": price}
    return {"sku": sku, "task": task, "locale": "en", "variant": variant, "title": fields["title"],
            "brand": None, "price": price, "fields_json": json.dumps(fields, sort_keys=True),
            "input_fingerprint": f"fp-{sku}-{price}", "template": f"{task}/v1", "attempt": 1,
            "input_flags": None, "reject_reason": None, "retry_reason": None, "text": text, "label": None,
            "model": "m", "adapter": "", "sampling_hash": "h", "run_id": run_id,
            "generated_at": dt.datetime.now(dt.timezone.utc), "tokens_in": 1, "tokens_out": 2,
            "attempts": 1, "finish_reason": "stop", "status": status,
            "stage": "guard" if status == "rejected" else None, "reason": reason,
            "detail": text if status == "rejected" else None}


def finish_run(spec, run_id, items, started="2026-12-01T10:00:00+00:00"):
    """What GenerationRun does after generation, for real: counts from the staged files, the
    publish decision, the commit, the record, the pointers (``_commit`` and ``_finish``)."""
    import time
    from types import SimpleNamespace

    import pyarrow.parquet as pq

    from pdgen_core import run_record
    from pdgen_core.pipeline import GenerationRun
    from pdgen_core.stages.guard import GEN_SCHEMA

    run = GenerationRun(spec, run_id)
    gen = run.layout.generated
    gen.fs.create_dir(gen.path, recursive=True)
    pq.write_table(pa.Table.from_pylist(items, schema=GEN_SCHEMA), gen.path + "/part-0.parquet", filesystem=gen.fs)
    tables = run._commit(SimpleNamespace(resumed=0))
    run.counts.read = len({r["sku"] for r in items})
    record = run_record.build_record(spec, run_id, run.counts, dt.datetime.fromisoformat(started),
                                     time.monotonic(), tables, "m", 1.0, [], gate=run.gate)
    return run._finish(record, tables)


def test_gate_every_reader_sees_only_published_content_polars_and_cli(tmp_path):
    """Point 1-3 of issue 20 end to end: published runs commit to content/<task>, staged runs to
    staged/<run_id>/; Polars reading the latest version sees published content only; promote is
    one version, idempotent, refuses an older run (pointing to rollback) and an unknown id (listing
    the staged runs); a task with no accepted text has an empty table and a pointer."""
    import polars as pl
    from typer.testing import CliRunner

    from pdgen_core.cli import app

    out = tmp_path / "out"
    content = out / "content"
    cli = CliRunner()
    r1 = finish_run(spec_at(out), "20261201T090000Z-aaaaaa", [
        gen_row("20261201T090000Z-aaaaaa", "description", "a", "One a."),
        gen_row("20261201T090000Z-aaaaaa", "description", "b", "One b."),
        gen_row("20261201T090000Z-aaaaaa", "blurb", "a", "Bad.", status="rejected", reason="degenerate")],
        started="2026-12-01T09:00:00+00:00")
    assert r1["status"] == "committed" and r1["publish"]["published"]
    # every task has its table: blurb accepted nothing, and is an empty, published table
    blurb = pl.read_delta(str(content / "blurb"))
    assert blurb.height == 0 and set(commit.CONTENT_SCHEMA.names) <= set(blurb.columns)
    assert versions.read_pointer(str(out), "blurb")[0]["version"] == 0
    assert cli.invoke(app, ["rollback", str(out), "--task", "blurb", "--to", "0"]).exit_code == 0
    assert cli.invoke(app, ["versions", str(out), "--task", "blurb"]).exit_code == 0
    v1 = r1["tables"]["content/description"]

    staged_id, older_id = "20261201T110000Z-bbbbbb", "20261201T080000Z-cccccc"
    staged = spec_at(out, output={"publish": "staged"})
    r2 = finish_run(staged, staged_id, [gen_row(staged_id, "description", "b", "Two b.", price=12.5),
                                         gen_row(staged_id, "description", "c", "Two c.")],
                    started="2026-12-01T11:00:00+00:00")
    r0 = finish_run(staged, older_id, [gen_row(older_id, "description", "a", "Zero a.")],
                    started="2026-12-01T08:00:00+00:00")
    assert r2["status"] == "staged" and r2["publish"]["held_by"] == "staged"
    assert f"staged/{staged_id}/description" in r2["tables"] and "content/description" not in r2["tables"]
    # the gate: the latest version is still r1's, whatever reads it
    df = pl.read_delta(str(content / "description"))
    assert sorted(zip(df["sku"], df["text"])) == [("a", "One a."), ("b", "One b.")]
    assert set(df["run_id"]) == {r1["run_id"]}
    assert versions.published_version(str(out), "description") == v1
    listed = cli.invoke(app, ["versions", str(out), "--task", "description"])
    assert listed.exit_code == 0 and staged_id in listed.stdout and older_id in listed.stdout

    # unknown ids: a clear error listing the runs that can be promoted
    nope = cli.invoke(app, ["promote", "NOPE", "--output", str(out)])
    assert nope.exit_code == 2 and "Errno" not in nope.output
    assert "no run 'NOPE'" in nope.output and staged_id in nope.output and older_id in nope.output

    ok = cli.invoke(app, ["promote", staged_id, "--output", str(out)])
    assert ok.exit_code == 0, ok.output
    df = pl.read_delta(str(content / "description"))
    assert sorted(zip(df["sku"], df["text"])) == [("a", "One a."), ("b", "Two b."), ("c", "Two c.")]
    v2 = versions.published_version(str(out), "description")
    assert v2 == v1 + 1 and versions.read_pointer(str(out), "description")[0]["run_id"] == staged_id
    assert not (out / "staged" / staged_id).exists()
    rec = storage.read_json(storage.resolve(str(out)).child("runs", f"{staged_id}.json"))
    assert rec["status"] == "committed" and rec["tables"]["content/description"] == v2
    again = cli.invoke(app, ["promote", staged_id, "--output", str(out)])
    assert again.exit_code == 0 and versions.published_version(str(out), "description") == v2

    # an older staged run is refused (pointing to rollback), unless --allow-older
    old = cli.invoke(app, ["promote", older_id, "--output", str(out)])
    assert old.exit_code == 2 and "pdgen rollback" in old.output and "--allow-older" in old.output
    assert versions.published_version(str(out), "description") == v2
    # so is re-promoting r1, published before and replaced since: that is a rollback
    back = cli.invoke(app, ["promote", r1["run_id"], "--output", str(out)])
    assert back.exit_code == 2 and f"--to {v1}" in back.output
    forced = cli.invoke(app, ["promote", older_id, "--output", str(out), "--allow-older"])
    assert forced.exit_code == 0, forced.output
    df = pl.read_delta(str(content / "description"))
    assert dict(zip(df["sku"], df["text"]))["a"] == "Zero a."

    # rollback: a new version with r1's rows, still the latest, read so by Polars
    rolled = cli.invoke(app, ["rollback", str(out), "--task", "description", "--to", str(v1)])
    assert rolled.exit_code == 0
    df = pl.read_delta(str(content / "description"))
    assert sorted(zip(df["sku"], df["text"])) == [("a", "One a."), ("b", "One b.")]
    assert versions.published_version(str(out), "description") == v2 + 2
    assert versions.live_run(str(out), "description") == r1["run_id"]


def test_a_first_staged_run_leaves_empty_published_tables(tmp_path):
    import polars as pl

    out = tmp_path / "out"
    rid = "20261201T100000Z-dddddd"
    finish_run(spec_at(out, output={"publish": "staged"}), rid, [gen_row(rid, "description", "a", "A a.")])
    for task in ("description", "blurb"):
        assert pl.read_delta(str(out / "content" / task)).height == 0
        assert versions.read_pointer(str(out), task)[0]["version"] == 0
    assert versions.promote(str(out), rid) == {"description": 1, "blurb": 0}
    assert pl.read_delta(str(out / "content" / "description"))["text"].to_list() == ["A a."]


def test_floor_holds_a_run_below_min_accept_rate_as_staged_and_exits_1(tmp_path, capsys):
    import typer

    from pdgen_core.cli.run import exit_if_held

    out = tmp_path / "out"
    rid = "20261201T100000Z-eeeeee"
    spec = spec_at(out, tasks=["description"], guardrails={"min_accept_rate": {"description": 0.5}})
    items = [gen_row(rid, "description", "a", "A a.")] + [
        gen_row(rid, "description", s, "bad", status="rejected", reason="degenerate") for s in "bcd"]
    rec = finish_run(spec, rid, items)
    gate = rec["publish"]
    assert rec["status"] == "staged" and gate["held_by"] == "min_accept_rate" and not gate["published"]
    assert gate["below"] == {"description": 0.25} and gate["min_accept_rate"] == {"description": 0.5}
    assert gate["accept_rate"] == {"description": 0.25}
    assert commit.open_table(storage.resolve(str(out)).child("content", "description")).to_pyarrow_table().num_rows == 0
    assert versions.staged_runs(str(out), "description") == [rid]
    with pytest.raises(typer.Exit) as exc:
        exit_if_held(rec, str(out))
    assert exc.value.exit_code == 1
    msg = capsys.readouterr().err
    assert "description accepted 1 of 4 (25%)" in msg and f"pdgen promote {rid}" in msg
    # the held run is read before it is published: `pdgen audit` samples its staged table
    from pdgen_core import audit

    assert [r["text"] for r in audit.sample(str(out), rid)] == ["A a."]
    # promote publishes it anyway (an explicit decision)
    assert versions.promote(str(out), rid) == {"description": 1}
    assert [r["text"] for r in audit.sample(str(out), rid)] == ["A a."]  # from content/ now


def test_publish_decision_floor_forms():
    from pdgen_core import run_record

    c = run_record.Counts()
    c.by_task = {"description": {"planned": 10, "accepted": 3, "rejected": 7, "unchanged": 0},
                 "blurb": {"planned": 5, "accepted": 0, "rejected": 0, "unchanged": 5}}
    one = spec_at("/tmp/x", guardrails={"min_accept_rate": 0.3})
    assert run_record.publish_decision(one, c)["published"]  # 30% is not below 30%; blurb: no rate
    strict = spec_at("/tmp/x", guardrails={"min_accept_rate": 0.31})
    d = run_record.publish_decision(strict, c)
    assert not d["published"] and d["held_by"] == "min_accept_rate" and list(d["below"]) == ["description"]
    assert d["accept_rate"]["blurb"] is None
    per_task = spec_at("/tmp/x", guardrails={"min_accept_rate": {"blurb": 0.9}})
    assert run_record.publish_decision(per_task, c)["published"]  # a no-op task has no rate to miss
    assert run_record.publish_decision(spec_at("/tmp/x", output={"publish": "staged"}), c)["held_by"] == "staged"
    # the floor judges runs, not texts: it does not change any fingerprint
    from pdgen_core.context_from_spec import guardrails_version

    assert guardrails_version(strict) == guardrails_version(spec_at("/tmp/x"))
    # a wrong shape is one spec problem, with the fix
    from pdgen_core.spec import SpecError

    for bad in (1.5, float("nan"), "high", [0.3], {"poem": 0.3}, {0: 0.3}, {"description": 2}):
        with pytest.raises(SpecError) as exc:
            spec_at("/tmp/x", guardrails={"min_accept_rate": bad})
        assert len(exc.value.problems) == 1 and "guardrails.min_accept_rate" in exc.value.problems[0]


def test_unknown_resume_id_is_refused_with_the_resumable_runs(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from pdgen_core import run_record
    from pdgen_core.cli import app

    out = tmp_path / "out"
    storage.write_json(storage.resolve(str(out)).child("_staging", "20261201T100000Z-ffffff", "run.json"), {})
    storage.write_json(storage.resolve(str(out)).child("_staging", ".write-probe"), {})
    assert run_record.resumable_runs(str(out)) == ["20261201T100000Z-ffffff"]
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({"name": "x", "catalog": {"uri": str(tmp_path / "c.parquet")},
                                    "model": {"source": "pdgen-tiny"}, "output": {"uri": str(out)}}))
    for cmd in ("run", "refresh"):
        r = CliRunner().invoke(app, [cmd, str(spec), "--resume", "BOGUS"])
        assert r.exit_code == 2, r.output
        assert "--resume BOGUS: no run 'BOGUS'" in r.output and "20261201T100000Z-ffffff" in r.output
    assert not (out / "runs" / "BOGUS.json").exists() and not (out / "_staging" / "BOGUS").exists()
    run_record.check_resumable(str(out), "20261201T100000Z-ffffff")  # a real one passes


def test_editors_see_why_show_reject_diff_fields_versions_iso(tmp_path):
    """show on a rejected sku gives its latest reason; diff names the input that changed and
    leaves out rows regenerated to the same text; versions prints ISO times within 80 columns."""
    from typer.testing import CliRunner

    from pdgen_core.cli import app

    out = tmp_path / "out"
    spec = spec_at(out, tasks=["description"])
    a, b = "20261201T090000Z-aaaaaa", "20261201T100000Z-bbbbbb"
    r1 = finish_run(spec, a, [gen_row(a, "description", "x", "One x."), gen_row(a, "description", "y", "One y."),
                              gen_row(a, "description", "z", "zzz", status="rejected", reason="degenerate")])
    r2 = finish_run(spec, b, [gen_row(b, "description", "x", "Two x.", price=12.5),
                              gen_row(b, "description", "y", "One y.", price=11.0),
                              gen_row(b, "description", "z", "still bad", status="rejected",
                                      reason="ungrounded_name", price=9.0)])
    v1, v2 = r1["tables"]["content/description"], r2["tables"]["content/description"]
    cli = CliRunner()
    shown = cli.invoke(app, ["show", str(out), "--task", "description", "--sku", "z"])
    assert shown.exit_code == 0 and "0 row(s)" in shown.stdout
    assert "latest reject: ungrounded_name" in shown.stdout and b in shown.stdout and "still bad" in shown.stdout

    d = versions.diff(str(out), "description", v1, v2)
    assert (d["changed"], d["same_text"]) == (1, 1)  # y: new price, same words: not a change
    assert d["samples"]["changed"][0]["fields"] == {"price": [10.0, 12.5]}
    printed = cli.invoke(app, ["diff", str(out), "--task", "description", "--from", str(v1), "--to", str(v2)])
    assert printed.exit_code == 0
    assert "x [en]: price 10.0 -> 12.5" in printed.stdout and "y [en]" not in printed.stdout
    assert "1 regenerated to the same text" in printed.stdout

    listed = cli.invoke(app, ["versions", str(out), "--task", "description"], env={"COLUMNS": "80"})
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, listed.stdout
    assert a in listed.stdout and b in listed.stdout  # run ids whole
    import re

    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed.stdout)
    assert not re.search(r"\b1\d{12}\b", listed.stdout)  # no epoch milliseconds


def test_promote_applies_a_staged_runs_tombstones_in_its_one_version(tmp_path):
    out = str(tmp_path / "out")
    v1 = write_run(out, "r1", rows(["a", "b"], "one", "r1"))
    gone = rows(["a"], "x", "r2")
    gone = gone.set_column(gone.schema.get_field_index("_op"), "_op", pa.array(["delete"]))
    stage_run(out, "r2", pa.concat_tables([rows(["c"], "two", "r2"), gone]))
    loc = storage.resolve(out).child("content", "description")
    assert sorted(r["sku"] for r in commit.open_table(loc).to_pyarrow_table().to_pylist()) == ["a", "b"]
    assert versions.promote(out, "r2") == {"description": v1 + 1}
    assert sorted(r["sku"] for r in commit.open_table(loc).to_pyarrow_table().to_pylist()) == ["b", "c"]
