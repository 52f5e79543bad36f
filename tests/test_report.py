"""pdgen_core.report: a two-run Delta table and run record, the report built from them, and the
page opened in headless Chromium (Debian's ``chromium``, driven by playwright) to check what a
person sees. The screenshot lands in pytest's tmp dir and in tests/artifacts/report.png."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from pdgen_core import report

R1, R2 = "20261127T080000Z-aaaaaa", "20261128T221500Z-ab12cd"
INJECT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned2 = 1">'
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
T0 = datetime(2026, 11, 28, 22, 15, tzinfo=timezone.utc)

CONTENT = pa.schema([
    ("sku", pa.string()), ("locale", pa.string()), ("task", pa.string()), ("variant", pa.string()),
    ("text", pa.string()), ("input_fingerprint", pa.string()), ("template", pa.string()), ("model", pa.string()),
    ("adapter", pa.string()), ("sampling_hash", pa.string()), ("run_id", pa.string()),
    ("generated_at", pa.timestamp("us", tz="UTC")), ("tokens_in", pa.int64()), ("tokens_out", pa.int64()),
    ("attempts", pa.int64()),
])
REJECTS = pa.schema([
    ("sku", pa.string()), ("task", pa.string()), ("locale", pa.string()), ("stage", pa.string()),
    ("reason", pa.string()), ("detail", pa.string()), ("run_id", pa.string()),
    ("rejected_at", pa.timestamp("us", tz="UTC")),
])


def _row(sku: str, text: str, run_id: str, i: int, attempts: int = 1) -> dict:
    return dict(sku=sku, locale="en", task="description", variant=None, text=text, input_fingerprint=f"fp-{sku}-{run_id}",
                template="description@1", model="pdgen-tiny-v1@2bcaeab580f3", adapter=None, sampling_hash="s1",
                run_id=run_id, generated_at=T0 + timedelta(seconds=i), tokens_in=40 + 3 * i, tokens_out=20 + 7 * i,
                attempts=attempts)


def _reject(sku: str, reason: str, detail: str, run_id: str) -> dict:
    return dict(sku=sku, task="description", locale="en", stage="validate", reason=reason, detail=detail,
                run_id=run_id, rejected_at=T0)


@pytest.fixture
def output(tmp_path: Path) -> Path:
    """Run 1 writes six descriptions; run 2 changes three, adds two, keeps three, rejects four."""
    out = tmp_path / "out"
    content, rejects = str(out / "content" / "description"), str(out / "rejects" / "description")
    first = [_row(f"SKU-{i:03d}", f"Plain cotton shirt number {i} in blue.", R1, i) for i in range(6)]
    write_deltalake(content, pa.Table.from_pylist(first, schema=CONTENT))  # version 0
    write_deltalake(rejects, pa.Table.from_pylist([_reject("SKU-900", "missing_title", "title empty", R1)],
                                                  schema=REJECTS))
    second = [
        _row("SKU-000", "Plain linen shirt number 0 in sand.", R2, 0),
        _row("SKU-001", "Soft cotton shirt number 1 in deep navy, cut slim.", R2, 1, attempts=2),
        _row("SKU-002", f"Shirt two {INJECT} {IMG} & more", R2, 2),
        *first[3:],
        _row("SKU-006", "A brand new scarf.", R2, 6),
        _row("SKU-007", "A brand new belt.", R2, 7),
    ]
    write_deltalake(content, pa.Table.from_pylist(second, schema=CONTENT), mode="overwrite")  # version 1
    write_deltalake(rejects, pa.Table.from_pylist(
        [_reject(f"SKU-9{i}0", "invalid_price", f"price -{i}", R2) for i in range(1, 4)]
        + [_reject("SKU-950", "missing_title", f"title {INJECT}", R2)], schema=REJECTS), mode="append")
    record = {
        "run_id": R2, "name": "spring-refresh", "status": "committed", "mode": "incremental",
        "spec": {"tasks": ["description"]}, "started_at": "2026-11-28T22:15:00Z", "finished_at": "2026-11-28T22:16:01Z",
        "model": {"source": "pdgen-tiny", "identity": "pdgen-tiny-v1@2bcaeab580f3"},
        "counts": {"read": 12, "accepted": 5, "rejected": 4, "unchanged": 3,
                   "by_task": {"description": {"accepted": 5, "rejected": 4, "unchanged": 3}},
                   "rejects_by_reason": {"description": {"invalid_price": 3, "missing_title": 1}}},
        "tokens": {"in": 5400, "out": 9000},
        "timing": {"wall_s": 61.2, "generate_s": 40.1, "rows_per_s": 1.76, "output_tokens_per_s": 147.0},
        "progress": [{"t": 0.0, "rows": 0}, {"t": 10.2, "rows": 32}, {"t": 20.0, "rows": 70}, {"t": 30.5, "rows": 108}],
        "tables": {"content/description": 1, "rejects/description": 1},
    }
    (out / "runs").mkdir(parents=True)
    (out / "runs" / f"{R2}.json").write_text(json.dumps(record))
    return out


def test_report_data_and_escaping(output, tmp_path):
    record, tasks = report.load(str(output), R2)
    (t,) = tasks
    assert t.versions == (1, 0)
    assert {r["sku"] for r in t.content} == {"SKU-000", "SKU-001", "SKU-002", "SKU-006", "SKU-007"}
    assert sorted(r["sku"] for r, _ in t.changed) == ["SKU-000", "SKU-001", "SKU-002"]
    assert t.new_keys == 2 and len(t.rejects) == 4

    html = report.build_report(str(output), R2, str(tmp_path / "r.html")).read_text()
    assert INJECT not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched from anywhere
    assert html.count("<script>") == 1  # ours, allowed by its hash in the CSP


def test_report_reads_tables_over_s3(output, tmp_path):
    """The same tables and record behind the S3 protocol (moto's server on 127.0.0.1)."""
    from pdgen_core import storage
    from pdgen_core.testing.s3server import local_s3

    with local_s3(buckets=("reports",)):
        storage.upload_dir(output, storage.resolve("s3://reports/out"))
        _, tasks = report.load("s3://reports/out", R2)
        html = report.build_report("s3://reports/out", R2, str(tmp_path / "s3.html")).read_text()
    (t,) = tasks
    assert t.versions == (1, 0) and len(t.changed) == 3 and len(t.rejects) == 4
    assert "s3://reports/out" in html and "SKU-001" in html


def test_missing_tables_are_said_not_raised(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r.json").write_text(json.dumps({"run_id": "r", "counts": {"by_task": {"blurb": {}}}}))
    html = report.build_report(str(tmp_path), "r", str(tmp_path / "r.html")).read_text()
    assert "no content table at" in html and "no progress samples" in html


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (its Python package)")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed: apt-get install -y chromium chromium-driver")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def test_report_in_chromium(output, tmp_path, browser):
    path = report.build_report(str(output), R2, str(tmp_path / "report.html"))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, requests = [], []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.resolve().as_uri())

    assert R2 in page.title()
    metric = lambda k: page.locator(f'.card[data-metric="{k}"] .num').inner_text()  # noqa: E731
    assert (metric("read"), metric("accepted"), metric("rejected"), metric("unchanged")) == ("12", "5", "4", "3")
    assert metric("tokens out") == "9,000" and metric("rows/s") == "1.76"
    counts = page.locator("#counts tbody tr").first.locator("td").all_inner_texts()
    assert counts == ["description", "5", "4", "3", "3", "2", "12"]

    reasons = page.locator("#task-description .reasons svg")
    assert reasons.locator("g.bar").count() == 2
    assert reasons.locator("g.bar").first.locator("text").all_text_contents() == ["invalid_price", "3"]
    assert page.locator("#throughput svg").count() == 2
    figs = page.locator("#task-description figure").all_inner_texts()
    assert len(figs) == 3 and all("n=5" in f for f in figs)

    changed = page.locator("#changed-description tbody tr")
    assert changed.count() == 3
    sku1 = changed.filter(has_text="SKU-001").locator("td").all_inner_texts()
    assert sku1[2] == "Plain cotton shirt number 1 in blue."
    assert sku1[3] == "Soft cotton shirt number 1 in deep navy, cut slim."
    assert page.locator("#changed-description tbody tr").filter(has_text="SKU-001").locator("ins").count() > 0

    # The injected title and text are shown as text and never ran.
    assert INJECT in changed.filter(has_text="SKU-002").inner_text()
    assert INJECT in page.locator("#rejects-description").inner_text()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("typeof window.__pwned2") == "undefined"
    assert page.locator("#task-description img").count() == 0

    # The report's own script runs (its hash matches the CSP): the filter hides non-matching rows.
    page.locator("input.filter").fill("sku-001")
    assert [r.is_visible() for r in changed.all()] == [False, True, False]
    page.locator("input.filter").fill("")

    assert errors == []
    assert all(u.startswith("file://") for u in requests), requests
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "report.png")


# --- `pdgen report` (pdgen_core.cli.report) -----------------------------------------------------


def _cli():
    import typer

    from pdgen_core.cli import report as report_cli

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, as pdgen's app: `report` stays a subcommand
    report_cli.register(app)
    return app


def test_report_command_writes_the_file(output, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "sub" / "report.html"
    r = CliRunner().invoke(_cli(), ["report", R2, "--output", str(output), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output
    html = out.read_text()
    assert R2 in html and "SKU-001" in html and INJECT not in html


def test_report_command_over_s3_and_default_out(output, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pdgen_core import storage
    from pdgen_core.testing.s3server import local_s3

    monkeypatch.chdir(tmp_path)
    with local_s3(buckets=("reportcli",)):
        storage.upload_dir(output, storage.resolve("s3://reportcli/out"))
        r = CliRunner().invoke(_cli(), ["report", R2, "--output", "s3://reportcli/out"])
    assert r.exit_code == 0, r.output
    assert "s3://reportcli/out" in (tmp_path / "report.html").read_text()


def test_report_command_unknown_run_says_which_record(output, tmp_path):
    from typer.testing import CliRunner

    r = CliRunner().invoke(_cli(), ["report", "no-such-run", "--output", str(output),
                                    "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 2
    assert f"no run record {output}/runs/no-such-run.json" in r.output
    assert not (tmp_path / "x.html").exists()
    r = CliRunner().invoke(_cli(), ["report", R2])  # --output is required
    assert r.exit_code == 2 and "--output" in r.output


def test_report_command_is_on_the_pdgen_app():
    from typer.testing import CliRunner

    from pdgen_core.cli import app

    r = CliRunner().invoke(app, ["report", "--help"])
    assert r.exit_code == 0 and "--output" in r.output and "--out" in r.output


# --- issue 20: the variant in the rejects table, input flags on every item -----------------------


def test_rejects_table_shows_the_variant(tmp_path):
    """A sku's budget and gift blurbs rejected for the same reason are two rows that differ
    only by variant: the table must show it, or they read as duplicates."""
    schema = pa.schema([*REJECTS, ("variant", pa.string())])
    rows = [dict(_reject("SKU-1", "brand_missing", "no brand", R2), task="blurb", variant=v)
            for v in ("gift", "budget")]
    write_deltalake(str(tmp_path / "rejects" / "blurb"), pa.Table.from_pylist(rows, schema=schema))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / f"{R2}.json").write_text(json.dumps({
        "run_id": R2, "counts": {"by_task": {"blurb": {"accepted": 0, "rejected": 2}},
                                 "input_flags": {"blurb": {"pii": 2, "html": 1}}},
        "tables": {"rejects/blurb": 0}}))
    html = report.build_report(str(tmp_path), R2, str(tmp_path / "r.html")).read_text()
    table = re.search(r'<table id="rejects-blurb".*?</table>', html).group(0)
    assert "<th>variant</th>" in table
    cells = re.findall(r"<tr><td><code>SKU-1</code></td><td>en</td><td>(\w+)</td>", table)
    assert cells == ["budget", "gift"], table  # side by side, each with its variant
    flags = re.search(r'<div class="flags">.*?</div>', html).group(0)
    assert "pii: 2" in flags and "html: 1" in flags


def test_input_flags_are_counted_on_every_item_not_only_accepted(tmp_path):
    """The run record's ``input_flags`` (what the report charts) count each generated item once,
    by its final row: a PII-flagged row the guard rejected is counted, a retry row is not."""
    import pyarrow.parquet as pq

    from pdgen_core import run_record
    from pdgen_core.storage import resolve

    staged = pa.table({
        "task": ["description"] * 4,
        "status": ["accepted", "rejected", "retry", "accepted"],
        "reason": [None, "pii_email", "pii_email", None],
        "retry_reason": [None, "pii_email", None, None],
        "attempts": [1, 2, 1, 1],
        "tokens_in": [10, 10, 10, 10], "tokens_out": [5, 5, 5, 5],
        "input_flags": ["html", "pii", "pii", None],
    })
    pq.write_table(staged, tmp_path / "gen.parquet")
    g = run_record.generated_counts([str(tmp_path / "gen.parquet")], resolve(str(tmp_path)).fs, "description")
    assert g["flags"] == {"html": 1, "pii": 1}
    assert g["status"] == {"accepted": 2, "rejected": 1, "retry": 1}


def test_a_run_held_as_staged_is_reported_from_its_staged_table(output, tmp_path):
    """A run below its floor (or output.publish: staged) committed to staged/<run_id>/<task>, not
    to content/: the report shows its rows from there beside the published text, and says so."""
    R3 = "20261129T090000Z-cc33dd"
    staged = pa.schema([*CONTENT, ("_op", pa.string())])
    rows = [{**_row("SKU-000", "A staged linen shirt in sand.", R3, 0), "_op": "upsert"},
            {**_row("SKU-050", "A staged new scarf.", R3, 1), "_op": "upsert"},
            {**_row("SKU-003", None, R3, 2), "_op": "delete"}]
    write_deltalake(str(output / "staged" / R3 / "description"), pa.Table.from_pylist(rows, schema=staged))
    (output / "runs" / f"{R3}.json").write_text(json.dumps({
        "run_id": R3, "status": "staged", "publish": {"held_by": "min_accept_rate"},
        "counts": {"by_task": {"description": {"accepted": 2, "rejected": 0, "unchanged": 0}}},
        "tables": {f"staged/{R3}/description": 0}}))
    _, (t,) = report.load(str(output), R3)
    assert sorted(r["sku"] for r in t.content) == ["SKU-000", "SKU-050"]  # the tombstone is no text
    assert [(r["sku"], old) for r, old in t.changed] == [("SKU-000", "Plain linen shirt number 0 in sand.")]
    assert t.new_keys == 1 and t.versions == (None, 1)
    html = report.build_report(str(output), R3, str(tmp_path / "r3.html")).read_text()
    assert "staged, not published" in html and f"pdgen promote {R3}" in html
    assert "<ins>A staged</ins>" in html  # the word diff against the published text
