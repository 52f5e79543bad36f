"""``pdgen review`` (pdgen_core.review): the sample statistics, the queue, the decisions table, the
reviewed publish, the app's safety (token, host check, CSRF, escaping of the hostile corpus), and
the whole flow in headless Chromium (playwright, as tests/test_report.py): open the queue, approve,
edit and reject rows, promote, and read back what was published. Its screenshot lands in
tests/artifacts/review.png; ``PDGEN_REVIEW_SCREENSHOT=docs/review.png`` refreshes the README's.

The runs are written with pdgen's own commit (``stages.commit.commit_run``) from staged generation
files in the local S3 server; no engine runs here (what is reviewed is bookkeeping).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from markupsafe import escape

from pdgen_core import run_record, storage, versions
from pdgen_core.errors import InputError
from pdgen_core.review import create_app, decisions, publish, queue, stats
from pdgen_core.staging import RunLayout, StagedFiles
from pdgen_core.stages import commit
from pdgen_core.stages.guard import GEN_SCHEMA
from tests.corpus import hostile

TASK = "description"
R1, R2 = "20261201T090000Z-aaaaaa", "20261201T100000Z-bbbbbb"
INJECT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned2 = 1">'
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"  # ignored; PDGEN_REVIEW_SCREENSHOT=docs/review.png refreshes the README's
# Catalog titles from the hostile corpus that validation lets through (HTML, Jinja, chat markers).
HOSTILE = [c.row["title"] for c in hostile.ROWS if c.reject is None and isinstance(c.row.get("title"), str)
           and len(c.row["title"]) < 300 and any(ch in c.row["title"] for ch in "<>&{")]


def gen_row(sku: str, text: str, run_id: str, title: str = "Trail Runner Shoe", **kw) -> dict:
    fields = {"title": title, "brand": "Northwind", "price": 49.5, "color": "black"}
    return {"sku": sku, "task": TASK, "locale": "en", "variant": "", "title": title, "brand": "Northwind",
            "price": 49.5, "fields_json": json.dumps(fields, sort_keys=True),
            "input_fingerprint": f"fp-{sku}-{kw.pop('fp', 'v1')}", "template": "description@7", "attempt": 1,
            "text": text, "model": "smollm2@abc", "adapter": "", "sampling_hash": "s1", "run_id": run_id,
            "generated_at": dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), "tokens_in": 40, "tokens_out": 20,
            "attempts": 1, "finish_reason": "stop", "status": "accepted", **kw}


def commit_run(out: str, run_id: str, rows: list[dict], publish_it: bool, spec_output: dict | None = None,
               started: str = "2026-12-01T09:00:00+00:00") -> dict:
    """A run as the pipeline leaves it: its staged generation file, ``commit_run``, the record."""
    layout = RunLayout(storage.resolve(out), run_id)
    storage.retry_io(lambda: layout.out.fs.create_dir(layout.generated.path), "mkdir")
    with layout.out.fs.open_output_stream(layout.generated.child("part-0.parquet").path) as f:
        pq.write_table(pa.Table.from_pylist(rows, schema=GEN_SCHEMA), f)
    counts = run_record.Counts()
    counts.add(TASK, "accepted", sum(r["status"] == "accepted" for r in rows))
    counts.add(TASK, "rejected", sum(r["status"] == "rejected" for r in rows))
    tables = commit.commit_run(layout, StagedFiles.of(layout), [TASK], counts, tombstone=False,
                               publish=publish_it)
    rec = {"run_id": run_id, "name": "review-test", "started_at": started,
           "status": "committed" if publish_it else "staged", "tables": tables,
           "spec": {"output": {"uri": out, "publish": "auto" if publish_it else "staged", **(spec_output or {})}}}
    storage.write_json(layout.record(), rec)
    storage.delete_tree(layout.staging)
    if publish_it:
        versions.sync_pointer(out, TASK)
    return rec


def two_runs(out: str, n: int = 12, spec_output: dict | None = None) -> None:
    """R1 publishes ``n`` descriptions; R2 (staged) rewrites them all and adds one, with one row
    retried, one trimmed, one with flagged inputs and one whose catalog title is hostile."""
    commit_run(out, R1, [gen_row(f"SKU-{i:03d}", f"A plain black shoe number {i}.", R1) for i in range(n)], True)
    second = [gen_row(f"SKU-{i:03d}", f"A light black running shoe number {i}, made for trails.", R2, fp="v2")
              for i in range(n)]
    second[1].update(attempts=2, attempt=2, retry_reason="ungrounded_number")
    second[2].update(finish_reason="length_trimmed")
    second[3].update(input_flags="html,injection")
    second[4].update(title=HOSTILE[0], fields_json=json.dumps({"title": " ".join(HOSTILE), "brand": IMG}),
                     text=f"Shoe four {INJECT} {IMG} & more")
    second.append(gen_row("SKU-NEW", "A brand new trail shoe.", R2))
    commit_run(out, R2, second, False, spec_output, started="2026-12-01T10:00:00+00:00")


def content(out: str) -> dict[str, dict]:
    loc = storage.resolve(out).child("content", TASK)
    t = commit.open_table(loc).to_pyarrow_table(filesystem=storage.table_filesystem(loc))
    return {r["sku"]: r for r in storage.plain_types(t).to_pylist()}


def rejects(out: str) -> list[dict]:
    loc = storage.resolve(out).child("rejects", TASK)
    t = commit.open_table(loc)
    return [] if t is None else storage.plain_types(t.to_pyarrow_table(filesystem=storage.table_filesystem(loc))).to_pylist()


@pytest.fixture(autouse=True)
def _fresh_cache():
    queue.staged_rows.cache_clear()
    yield
    queue.staged_rows.cache_clear()


# -- statistics and the queue ---------------------------------------------------------------------

def test_sample_size_and_bound_are_the_exact_binomial_ones():
    assert stats.sample_size(1000) == 59 and stats.sample_size(1000, 0.02) == 149  # 0.95^59 < 0.05
    assert stats.sample_size(12) == 12 and stats.sample_size(0) == 0               # a census
    assert stats.upper_bound(0, 59) == pytest.approx(0.0495, abs=1e-4)              # rule of three: ~3/n
    assert stats.upper_bound(1, 59) == pytest.approx(0.0779, abs=1e-4)              # beta.ppf(.95, 2, 58)
    assert stats.upper_bound(3, 100) == pytest.approx(0.0757, abs=1e-4)
    assert stats.upper_bound(0, 0) is None and stats.upper_bound(5, 5) == 1.0


def test_queue_is_a_stable_sample_plus_every_borderline_row(bucket):
    out = f"{bucket}/o"
    two_runs(out, n=80)
    (q,) = queue.build(out, R2, TASK, None)
    assert (q.population, len(q.sample)) == (81, 59)
    assert set(q.borderline) == {("SKU-001", "en", ""), ("SKU-002", "en", ""), ("SKU-003", "en", "")}
    assert q.borderline[("SKU-001", "en", "")] == ["retried (attempt 2; attempt 1 rejected: ungrounded_number)"]
    assert set(q.keys) == set(q.sample) | set(q.borderline) and len(q.keys) == len(set(q.keys))
    assert queue.build(out, R2, TASK, None)[0].sample == q.sample  # seeded by run, task, locale
    assert queue.word_diff("a plain black shoe", "a light black shoe") == [
        ("equal", "a "), ("delete", "plain"), ("insert", "light"), ("equal", " black shoe")]


def test_all_rows_publish_when_the_sample_bounds_the_defect_rate(bucket):
    out = f"{bucket}/o"
    two_runs(out, n=12, spec_output={"max_defect_rate": 0.3})
    s = publish.task_summary(out, R2, TASK, 0.3)
    assert (s["rows"], s["sample"], s["mode"]) == (13, 9, "approved_only")  # nothing reviewed yet
    (q,) = queue.build(out, R2, TASK, 0.3)
    rows = {queue.key_of(r): r for r in queue.staged_rows(out, R2, TASK)}
    decisions.record_many(out, TASK, [
        {"run_id": R2, "sku": k[0], "locale": k[1], "variant": k[2], "decision": "approve",
         "text_fingerprint": decisions.text_fingerprint(rows[k]["text"]), "reviewer": "t"} for k in q.sample])
    s = publish.task_summary(out, R2, TASK, 0.3)
    assert s["mode"] == "all" and s["upper_bound"] == pytest.approx(1 - 0.05 ** (1 / 9))
    got = publish.publish_reviewed(out, R2)
    assert got["review"][TASK]["mode"] == "all" and got["review"][TASK]["published_rows"] == 13
    texts = content(out)
    assert len(texts) == 13 and {r["run_id"] for r in texts.values()} == {R2}
    rec = run_record.read_record(out, R2)
    assert rec["status"] == "committed" and rec["publish"]["review"]["tasks"][TASK]["mode"] == "all"


def test_a_publish_that_dies_before_its_promote_is_run_again_and_loses_no_reject(bucket, monkeypatch):
    """The review rejects are appended (once, by their app transaction) before the promote: a
    publish killed between the two leaves the run staged, and the re-run publishes it with each
    reject in the table once."""
    from pdgen_core import versions

    out = f"{bucket}/o"
    two_runs(out, n=6)
    rows = {queue.key_of(r): r for r in queue.staged_rows(out, R2, TASK)}
    decisions.record_many(out, TASK, [
        {"run_id": R2, "sku": k[0], "locale": k[1], "variant": k[2], "decision": d, "reason": "wrong colour",
         "text_fingerprint": decisions.text_fingerprint(rows[k]["text"]), "reviewer": "t"}
        for k, d in zip(sorted(rows), ["reject", "approve", "approve"])])
    real = versions.promote

    def dies(*a, **k):
        raise OSError("connection reset while promoting")
    monkeypatch.setattr(versions, "promote", dies)
    with pytest.raises(OSError):
        publish.publish_reviewed(out, R2)
    assert all(r["run_id"] != R2 for r in content(out).values())   # nothing of it published yet
    assert [r["sku"] for r in rejects(out) if r["stage"] == "review"] == [sorted(rows)[0][0]]
    monkeypatch.setattr(versions, "promote", real)
    queue.staged_rows.cache_clear()
    got = publish.publish_reviewed(out, R2)
    assert got["review"][TASK]["published_rows"] == 2
    review_rejects = [r for r in rejects(out) if r["stage"] == "review" and r["run_id"] == R2]
    assert [r["sku"] for r in review_rejects] == [sorted(rows)[0][0]]
    approved = {k[0] for k in sorted(rows)[1:3]}
    assert {r["sku"] for r in content(out).values() if r["run_id"] == R2} == approved


def test_a_decision_on_a_text_that_changed_is_ignored(bucket):
    out = f"{bucket}/o"
    two_runs(out, n=6)
    decisions.record(out, TASK, run_id=R2, sku="SKU-000", locale="en", variant="", decision="approve",
                     text_fingerprint=decisions.text_fingerprint("some other text"), reviewer="t")
    assert publish.valid_decisions(out, R2, TASK) == {}
    assert len(decisions.latest(out, TASK, R2)) == 1


# -- the app's safety --------------------------------------------------------------------------------

def client(app, **kw):
    from starlette.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1:8765", **kw)


def test_binds_loopback_unless_a_token_is_given(bucket):
    with pytest.raises(InputError, match="token"):
        create_app(f"{bucket}/o", "t", host="0.0.0.0")
    with pytest.raises(InputError, match="16 characters"):
        create_app(f"{bucket}/o", "t", host="0.0.0.0", token="short")
    tok = "a-long-enough-review-token"
    c = client(create_app(f"{bucket}/o", "t", host="0.0.0.0", token=tok))
    assert c.get("/").status_code == 401
    assert c.get("/", headers={"Authorization": f"Bearer {tok}"}).status_code == 200
    assert c.get(f"/?token={tok}").status_code == 200 and c.get("/").status_code == 200  # now a cookie
    # On loopback the Host header must be a loopback name (DNS rebinding).
    assert client(create_app(f"{bucket}/o", "t")).get("/", headers={"host": "evil.example"}).status_code == 400


def test_forms_refuse_a_missing_csrf_token_or_another_origin(bucket):
    out = f"{bucket}/o"
    two_runs(out, n=6)
    c = client(create_app(out, "t"))
    page = c.get(f"/runs/{R2}/{TASK}/row", params={"sku": "SKU-000", "locale": "en", "variant": ""})
    assert page.status_code == 200
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    fp = page.text.split('name="fp" value="')[1].split('"')[0]
    form = {"sku": "SKU-000", "locale": "en", "variant": "", "fp": fp, "decision": "approve"}
    url = f"/runs/{R2}/{TASK}/decide"
    assert c.post(url, data=form).status_code == 403
    assert c.post(url, data={**form, "csrf": "0" * 64}).status_code == 403
    assert c.post(url, data={**form, "csrf": csrf}, headers={"origin": "http://evil.example"}).status_code == 403
    assert c.post(f"/runs/{R2}/promote", data={}).status_code == 403
    assert publish.valid_decisions(out, R2, TASK) == {}
    ok = c.post(url, data={**form, "csrf": csrf}, headers={"origin": "http://127.0.0.1:8765"}, follow_redirects=False)
    assert ok.status_code == 303 and publish.valid_decisions(out, R2, TASK)[("SKU-000", "en", "")]["reviewer"] == "t"
    assert "script-src" not in page.headers["content-security-policy"]  # no script runs at all
    assert c.get("/runs/../../etc").status_code == 404 and c.get(f"/runs/{R2}/nosuchtask/row").status_code == 404


def test_hostile_text_is_escaped_everywhere(bucket):
    out = f"{bucket}/o"
    two_runs(out, n=6)
    c = client(create_app(out, "t"))
    pages = [c.get(f"/runs/{R2}").text,
             c.get(f"/runs/{R2}/{TASK}/row", params={"sku": "SKU-004", "locale": "en", "variant": ""}).text]
    for html in pages:
        assert "<script" not in html and "<img" not in html and "<b>Bold" not in html
    row = pages[1]
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in row
    facts = row.split('id="facts"')[1].split("</table>")[0]
    for title in HOSTILE:  # each hostile title is in the facts, escaped, and no template ran on it
        assert str(escape(title)) in facts
    assert "{{ 7*7 }}" in facts and "49" not in facts  # no template ran on a title ({{ 7*7 }})


# -- the whole flow in Chromium ------------------------------------------------------------------------

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


@pytest.fixture
def served(bucket):
    """The review app of a two-run output, served by uvicorn on a free loopback port."""
    import uvicorn

    out = f"{bucket}/o"
    two_runs(out, n=12)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(out, "test-reviewer"), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield out, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_review_approve_edit_reject_and_promote_in_chromium(served, browser, tmp_path):
    out, base = served
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(base + "/")
    page.locator("#runs a", has_text=R2).click()
    assert "defect rate" in page.locator(f"#task-{TASK} .bounds").inner_text()
    assert page.locator("table.queue tbody tr").count() == 13  # a census: 13 rows < 59

    def open_row(sku):
        page.goto(base + f"/runs/{R2}")
        page.locator(f'table.queue tr[data-sku="{sku}"] a').click()
        assert page.locator("#sku").inner_text() == sku

    for sku in ("SKU-000", "SKU-001"):
        open_row(sku)
        page.locator("#approve").click()
        assert page.locator(f'tr[data-sku="{sku}"] .tag.approve').count() == 1
    open_row("SKU-002")
    assert page.locator("#diff del").count() > 0 and page.locator("#diff ins").count() > 0
    page.locator("#text").fill("A light black trail shoe, number 2.")
    page.locator("#edit").click()
    open_row("SKU-003")
    page.locator("#reason").fill("invents a material")
    page.locator("#reject").click()
    open_row("SKU-004")  # the hostile row: its text and facts are shown as text, and nothing ran
    assert INJECT in page.locator("#proposed").inner_text()
    assert HOSTILE[0] in page.locator("#facts").inner_text() and IMG in page.locator("#facts").inner_text()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("typeof window.__pwned2") == "undefined"
    assert page.locator("main img").count() == 0
    open_row("SKU-001")
    assert "ungrounded_number" in page.locator("#guard").inner_text()
    assert page.locator("#decision").inner_text() == "approve"
    shot = tmp_path / "review.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "review.png")
    if os.environ.get("PDGEN_REVIEW_SCREENSHOT"):  # the README's picture: docs/review.png
        shutil.copyfile(shot, os.environ["PDGEN_REVIEW_SCREENSHOT"])

    page.goto(base + f"/runs/{R2}")
    assert "only the approved and edited rows" in page.locator(f'#task-{TASK} [data-k="mode"]').inner_text()
    page.locator("#promote").click()
    assert page.locator('#published [data-k="mode"]').inner_text() == "approved_only"
    assert errors == []

    texts = content(out)
    from_r2 = {sku for sku, r in texts.items() if r["run_id"] == R2}
    assert from_r2 == {"SKU-000", "SKU-001", "SKU-002"}  # exactly the approved rows and the edit
    assert texts["SKU-002"]["text"] == "A light black trail shoe, number 2."
    assert texts["SKU-002"]["lineage"] == "human_edit" and texts["SKU-002"]["input_fingerprint"] == "fp-SKU-002-v2"
    assert texts["SKU-003"]["text"] == "A plain black shoe number 3." and "SKU-NEW" not in texts
    (rej,) = [r for r in rejects(out) if r["reason"] == "review_rejected"]
    assert (rej["sku"], rej["stage"], rej["input_fingerprint"]) == ("SKU-003", "review", "fp-SKU-003-v2")
    assert "invents a material" in rej["detail"] and "test-reviewer" in rej["detail"]
    rec = run_record.read_record(out, R2)
    assert rec["publish"]["review"]["tasks"][TASK]["mode"] == "approved_only"
    assert versions.staged_runs(out, TASK) == []
    assert {d["decision"] for d in decisions.latest(out, TASK, R2).values()} == {"approve", "edit", "reject"}


def test_a_refresh_keeps_edits_and_review_rejects_until_their_inputs_change(ray_local, bucket):
    """The refresh's anti-joins (``incremental.current_keys``, ``guard_rejected_keys``) drop an
    edited item and a reviewer-rejected one while their input fingerprints are the same, and keep
    them once an input changed."""
    import ray

    from pdgen_core import incremental

    out = f"{bucket}/o"
    two_runs(out, n=6)
    rows = {queue.key_of(r): r for r in queue.staged_rows(out, R2, TASK)}
    fp = {k: decisions.text_fingerprint(r["text"]) for k, r in rows.items()}
    decisions.record_many(out, TASK, [
        {"run_id": R2, "sku": "SKU-003", "locale": "en", "variant": "", "decision": "reject", "reason": "wrong colour",
         "text_fingerprint": fp[("SKU-003", "en", "")], "reviewer": "t"},
        {"run_id": R2, "sku": "SKU-002", "locale": "en", "variant": "", "decision": "edit", "edited_text": "Edited.",
         "text_fingerprint": fp[("SKU-002", "en", "")], "reviewer": "t"}])
    publish.publish_reviewed(out, R2)
    work = ray.data.from_items([{"sku": s, "locale": "en", "variant": "", "input_fingerprint": f"fp-{s}-{v}"}
                                for s in ("SKU-002", "SKU-003") for v in ("v2", "v3")])
    base = storage.resolve(out)
    left = incremental.anti_join(incremental.anti_join(work, incremental.current_keys(base.child("content", TASK))),
                                 incremental.guard_rejected_keys(base.child("rejects", TASK))).take_all()
    assert sorted(r["input_fingerprint"] for r in left) == ["fp-SKU-002-v3", "fp-SKU-003-v3"]
    assert content(out)["SKU-002"]["text"] == "Edited."


# -- the command -------------------------------------------------------------------------------------

def test_review_command_refuses_an_open_address_without_a_token_and_an_unknown_run(bucket):
    from typer.testing import CliRunner

    from pdgen_core.cli import app

    out = f"{bucket}/o"
    r = CliRunner().invoke(app, ["review", out, "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "token" in r.output
    r = CliRunner().invoke(app, ["review", out, "--run", "nope"])
    assert r.exit_code == 2 and "nope" in r.output
    assert "review" in CliRunner().invoke(app, ["--help"]).output
