"""``pdgen audit``: a run's accepted texts sampled per task, with their facts from the run's
catalog, on small Delta tables and a catalog written here (no engine, no Ray)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from pdgen_core import audit
from pdgen_core.cli import audit as audit_cli
from pdgen_core.stages.commit import CONTENT_SCHEMA

R1, R2 = "20261201T080000Z-aaaaaa", "20261201T090000Z-bbbbbb"


def _row(sku: str, task: str, text: str, run_id: str, variant: str = "") -> dict:
    return dict(sku=sku, locale="en", task=task, variant=variant, text=text, label=None,
                input_fingerprint=f"fp-{sku}", template=f"{task}/v1", model="smollm2-135m-instruct@x",
                adapter="", sampling_hash="s", run_id=run_id, generated_at=None, tokens_in=10,
                tokens_out=12, attempts=1, finish_reason="stop")


@pytest.fixture
def output(tmp_path: Path) -> Path:
    """A catalog of 30 rows; run 1 wrote 30 descriptions, run 2 rewrote 12 of them and 5 blurbs."""
    cat = tmp_path / "catalog.parquet"
    pq.write_table(pa.table({
        "product_id": list(range(100, 130)),
        "product_name": [f"Acme Men Navy Shirt {i}" for i in range(30)],
        "brand": ["Acme"] * 30, "price_inr": [799 + i for i in range(30)], "unused": ["x"] * 30,
    }), cat)
    out = tmp_path / "out"
    desc = str(out / "content" / "description")
    write_deltalake(desc, pa.Table.from_pylist(
        [_row(str(100 + i), "description", f"First text {i}.", R1) for i in range(30)], schema=CONTENT_SCHEMA))
    second = [_row(str(100 + i), "description", f"Second text {i}.", R2) for i in range(12)]
    second += [_row(str(100 + i), "description", f"First text {i}.", R1) for i in range(12, 30)]
    write_deltalake(desc, pa.Table.from_pylist(second, schema=CONTENT_SCHEMA), mode="overwrite")  # v1
    write_deltalake(str(out / "content" / "blurb"), pa.Table.from_pylist(
        [_row(str(100 + i), "blurb", f"Blurb {i}.", R2, "gift") for i in range(5)]
        + [_row("999", "blurb", "A row the catalog lost.", R2, "gift")], schema=CONTENT_SCHEMA))
    record = {"run_id": R2, "spec": {"tasks": ["description", "blurb"], "catalog": {
        "uri": str(cat), "columns": {"sku": "product_id", "title": "product_name", "price": "price_inr"}}},
        "counts": {"by_task": {"description": {"accepted": 12}, "blurb": {"accepted": 6}}},
        "tables": {"content/description": 1, "content/blurb": 0}}
    (out / "runs").mkdir(parents=True)
    (out / "runs" / f"{R2}.json").write_text(json.dumps(record))
    return out


def test_samples_only_the_runs_accepted_texts_with_their_facts(output):
    rows = audit.sample(str(output), R2, per_task=5)
    desc = [r for r in rows if r["task"] == "description"]
    assert len(desc) == 5 and all(r["text"].startswith("Second text") for r in desc)
    r = desc[0]
    i = int(r["sku"]) - 100
    assert r["facts"] == {"title": f"Acme Men Navy Shirt {i}", "brand": "Acme", "price": 799 + i}
    assert "unused" not in r["facts"] and r["facts_note"] == ""
    blurbs = [r for r in rows if r["task"] == "blurb"]
    assert len(blurbs) == 5 and {r["variant"] for r in blurbs} == {"gift"}


def test_sample_is_seeded_and_capped(output):
    a = [r["sku"] for r in audit.sample(str(output), R2, per_task=4, seed=1)]
    assert a == [r["sku"] for r in audit.sample(str(output), R2, per_task=4, seed=1)]
    assert a != [r["sku"] for r in audit.sample(str(output), R2, per_task=4, seed=2)]
    many = audit.sample(str(output), R2, per_task=100)
    assert sum(r["task"] == "description" for r in many) == 12 and sum(r["task"] == "blurb" for r in many) == 6
    lost = [r for r in many if r["sku"] == "999"]
    assert lost[0]["facts"] == {} and lost[0]["facts_note"] == "row not found in the catalog"


def test_an_unreadable_catalog_still_gives_the_texts(output, tmp_path):
    (tmp_path / "catalog.parquet").unlink()
    rows = audit.sample(str(output), R2, per_task=2)
    assert len(rows) == 4 and all(r["facts"] == {} and "not readable" in r["facts_note"] for r in rows)


def test_no_run_record_is_an_error_that_names_the_file(output):
    with pytest.raises(audit.AuditError, match="no run record .*nope.json"):
        audit.sample(str(output), "nope")


def _cli():
    import typer

    app = typer.Typer()
    app.callback()(lambda: None)
    audit_cli.register(app)
    return app


def test_audit_command_writes_csv_and_jsonl(output, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "a" / "audit.csv"
    r = CliRunner().invoke(_cli(), ["audit", R2, "--output", str(output), "--per-task", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "wrote 6 texts" in r.output and "description: 3" in r.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 6 and set(rows[0]) == set(audit.COLUMNS)
    assert json.loads(rows[0]["facts"])["brand"] == "Acme" and rows[0]["publishable"] == ""
    jl = tmp_path / "audit.jsonl"
    assert CliRunner().invoke(_cli(), ["audit", R2, "-o", str(output), "--out", str(jl)]).exit_code == 0
    assert len(jl.read_text().splitlines()) == 18
    bad = CliRunner().invoke(_cli(), ["audit", "nope", "--output", str(output)])
    assert bad.exit_code == 2 and "no run record" in bad.output


def test_audit_is_a_pdgen_command():
    from typer.testing import CliRunner

    from pdgen_core.cli import app

    r = CliRunner().invoke(app, ["audit", "--help"])
    assert r.exit_code == 0 and "--per-task" in r.output
