"""``pdgen migrate``: runs staged under the old layout (their rows committed to content/<task>,
the published pointer left behind) move into staging tables, the content table is restored to its
published version, and ``promote`` then publishes a migrated run as any staged run. Runs and
promotes refuse such an output until it is migrated. Local Delta tables, no Ray."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from pdgen_core import migrate, storage, versions
from pdgen_core.stages import commit
from tests.test_versions import rows, spec_at, src


def _old_run(out: str, run_id: str, table, staged: bool, started: str) -> int:
    """What pdgen before the gate (957c1f9) left: every run merged into content/description; a
    published one moved the pointer; the record had no ``publish`` section."""
    v = commit.merge_content(storage.resolve(out).child("content", "description"), src(table), run_id)
    if not staged:
        versions.publish(out, "description", v, run_id)
    storage.write_json(storage.resolve(out).child("runs", f"{run_id}.json"),
                       {"run_id": run_id, "started_at": started, "status": "committed",
                        "tables": {"content/description": v}})
    return v


def _deleting(table, skus):
    gone = rows(skus, "x", table.column("run_id")[0].as_py())
    gone = gone.set_column(gone.schema.get_field_index("_op"), "_op", pa.array(["delete"] * len(skus)))
    return pa.concat_tables([table, gone])


def _latest(out) -> dict[str, str]:
    """What any Delta reader sees: the latest version (Polars, as a consumer reads it)."""
    df = pl.read_delta(str(storage.resolve(out).child("content", "description").path))
    return dict(zip(df["sku"].to_list(), df["text"].to_list()))


@pytest.fixture
def legacy(tmp_path):
    """Published run A (a, b, c), then staged runs B (b changed, c deleted, d new) and C (e new),
    all in the content table; the pointer at A's version."""
    out = str(tmp_path / "out")
    va = _old_run(out, "A", rows(["a", "b", "c"], "one", "A"), False, "2026-11-20T09:00:00+00:00")
    vb = _old_run(out, "B", _deleting(rows(["b", "d"], "two", "B"), ["c"]), True, "2026-11-21T09:00:00+00:00")
    vc = _old_run(out, "C", rows(["e"], "three", "C"), True, "2026-11-22T09:00:00+00:00")
    return out, va, vb, vc


def test_old_staged_versions_are_found_and_runs_and_promotes_refuse(legacy):
    out, va, vb, vc = legacy
    assert sorted(_latest(out)) == ["a", "b", "d", "e"]  # the defect: readers see staged rows
    found = migrate.old_staged(out, "description")
    assert found["published"] == va and found["staged"] == [(vb, "B"), (vc, "C")] and not found["other"]
    with pytest.raises(migrate.LegacyLayout, match=r"pdgen migrate .*out") as e:
        migrate.check_output(out, ["description", "blurb"])
    assert f"v{vb}, v{vc}" in str(e.value) and "B, C" in str(e.value)
    with pytest.raises(migrate.LegacyLayout):
        migrate.promote(out, "B")  # the CLI's and the review's promote
    # A run's preflight stops on it too, before any work (before the model is resolved).
    import pyarrow.parquet as pq

    from pdgen_core import preflight
    from pdgen_core.staging import RunLayout

    pq.write_table(pa.table({"sku": ["a"], "title": ["Tent"], "price": [10.0]}), out + "/catalog.parquet")
    spec = spec_at(out, model={"source": "/nonexistent/model"})
    with pytest.raises(migrate.LegacyLayout, match="pdgen migrate"):
        preflight.preflight(spec, RunLayout(storage.resolve(spec.output.uri), "R1"))


def test_migrate_moves_staged_runs_out_restores_and_promote_publishes(legacy):
    out, va, vb, vc = legacy
    assert migrate.migrate(out, dry_run=True)["description"]["runs"] == [
        {"version": vb, "run_id": "B"}, {"version": vc, "run_id": "C"}]
    assert migrate.old_staged(out, "description") is not None  # a dry run changes nothing

    done = migrate.migrate(out)["description"]
    assert done["restored_as"] == vc + 1
    assert _latest(out) == {"a": "one a", "b": "one b", "c": "one c"}  # A's content, published
    ptr, _ = versions.read_pointer(out, "description")
    assert ptr["version"] == vc + 1 and ptr["run_id"] == "A"
    migrate.check_output(out, ["description"])  # runs may start again
    assert migrate.migrate(out) == {}  # nothing left: a second migrate is a no-op

    # B's staged table holds exactly what B changed: b and d upserted, c deleted.
    staged = commit.open_table(commit.staged_table(storage.resolve(out), "B", "description"))
    got = {r["sku"]: (r["_op"], r["text"]) for r in staged.to_pyarrow_table(
        filesystem=storage.table_filesystem(commit.staged_table(storage.resolve(out), "B", "description"))).to_pylist()}
    assert got == {"b": ("upsert", "two b"), "d": ("upsert", "two d"), "c": ("delete", None)}
    rec = storage.read_json(storage.resolve(out).child("runs", "B.json"))
    assert "content/description" not in rec["tables"] and "staged/B/description" in rec["tables"]
    assert rec["publish"]["published"] is False and rec["publish"]["migrated"] == {"description": vb}
    from pdgen_core import run_record

    assert run_record.promotable_runs(out) == ["B", "C"]

    # Promote B: its rows become the latest version, under its own run id, once.
    v = versions.promote(out, "B")["description"]
    assert _latest(out) == {"a": "one a", "b": "two b", "d": "two d"}
    assert versions.live_run(out, "description") == "B" and versions.promote(out, "B")["description"] == v
    # C started after B: promoting it is not "older"; it adds e on top.
    versions.promote(out, "C")
    assert _latest(out) == {"a": "one a", "b": "two b", "d": "two d", "e": "three e"}


def test_migrate_finishes_after_a_crash_between_its_steps(legacy, monkeypatch):
    out, va, vb, vc = legacy
    calls = []
    real = versions.rollback

    def crash(*a, **k):
        calls.append(a)
        raise OSError("connection reset (injected)")

    monkeypatch.setattr(versions, "rollback", crash)
    with pytest.raises(OSError):
        migrate.migrate(out)  # staged and records rewritten, the restore not made
    assert calls and sorted(_latest(out)) == ["a", "b", "d", "e"]
    monkeypatch.setattr(versions, "rollback", real)
    with pytest.raises(migrate.LegacyLayout):
        migrate.check_output(out, ["description"])
    done = migrate.migrate(out)["description"]
    assert done["restored_as"] == vc + 1 and _latest(out) == {"a": "one a", "b": "one b", "c": "one c"}
    staged = commit.open_table(commit.staged_table(storage.resolve(out), "B", "description"))
    assert staged.version() == 0  # written once, not twice


def test_migrate_refuses_when_a_published_version_sits_on_top_of_a_staged_one(tmp_path):
    out = str(tmp_path / "out")
    _old_run(out, "A", rows(["a"], "one", "A"), False, "2026-11-20T09:00:00+00:00")
    _old_run(out, "B", rows(["b"], "two", "B"), True, "2026-11-21T09:00:00+00:00")
    # A new-layout run that crashed before its pointer moved: its commit is not an old staged one.
    commit.merge_content(storage.resolve(out).child("content", "description"), src(rows(["c"], "3", "D")), "D")
    with pytest.raises(migrate.LegacyLayout, match="not old-layout staged runs"):
        migrate.migrate(out)


def test_staged_runs_with_nothing_ever_published_leave_an_empty_published_table(tmp_path):
    out = str(tmp_path / "out")
    v = _old_run(out, "B", rows(["b"], "two", "B"), True, "2026-11-21T09:00:00+00:00")
    assert versions.read_pointer(out, "description")[0] is None and _latest(out) == {"b": "two b"}
    with pytest.raises(migrate.LegacyLayout, match="with nothing published"):
        migrate.check_output(out, ["description"])
    done = migrate.migrate(out)["description"]
    assert done["published"] == -1 and done["restored_as"] == v + 1 and _latest(out) == {}
    ptr, _ = versions.read_pointer(out, "description")
    assert ptr["version"] == v + 1 and ptr["run_id"] is None and migrate.migrate(out) == {}
    versions.promote(out, "B")
    assert _latest(out) == {"b": "two b"} and versions.live_run(out, "description") == "B"


def test_a_new_layout_output_has_nothing_to_migrate(tmp_path):
    from tests.test_versions import stage_run, write_run

    out = str(tmp_path / "out")
    write_run(out, "A", rows(["a"], "one", "A"))
    versions.sync_pointer(out, "description")
    stage_run(out, "B", rows(["b"], "two", "B"))
    assert migrate.old_staged(out, "description") is None and migrate.migrate(out) == {}
    # A published run that crashed after its commit, before its pointer (no record yet): not old.
    commit.merge_content(storage.resolve(out).child("content", "description"), src(rows(["c"], "3", "E")), "E")
    assert migrate.old_staged(out, "description") is None


def test_cli_migrate_prints_what_moved(legacy):
    from pdgen_core.cli import app

    out, va, vb, vc = legacy
    r = CliRunner().invoke(app, ["migrate", out, "--dry-run"])
    assert r.exit_code == 0 and "would move" in r.output and f"B (v{vb})" in r.output
    r = CliRunner().invoke(app, ["promote", "B", "--output", out])
    assert r.exit_code != 0 and "pdgen migrate" in r.output
    r = CliRunner().invoke(app, ["migrate", out])
    assert r.exit_code == 0 and f"restored to v{va}" in r.output and "pdgen promote" in r.output
    r = CliRunner().invoke(app, ["migrate", out])
    assert r.exit_code == 0 and "nothing to migrate" in r.output
