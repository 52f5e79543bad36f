"""Hostile and broken catalog input (``tests/corpus/hostile.py``): every row is generated safely or
rejected with its reason, nothing raises, counts balance; schema drift either cleans per row or
stops the job before any work with a message naming the column and the mapping."""

from __future__ import annotations

import json
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus import hostile
from pdgen_core import storage
from pdgen_core.testing import chaos
from pdgen_core.spec import spec_from_dict
from pdgen_core.stages import read, validate
from pdgen_core.run_context import RunContext
from pdgen_core.stages.plan import work_items
from pdgen_core.stages.prompt import engine_request

SOURCE_COLUMNS = {"sku": "product_id", "title": "product_name", "price": "price_usd", "brand": "brand",
                  "category": "category", "color": "color", "description": "description"}
CASES = {c.name: c for c in hostile.ROWS}


def clean_like_the_pipeline(table: pa.Table) -> list[dict]:
    """``Job._clean`` without Ray: clean every batch, find duplicate skus among valid rows, mark."""
    clean = validate.clean_batch(table)
    valid = [s for s, r in zip(clean.column("sku").to_pylist(), clean.column("reject_reason").to_pylist())
             if r is None]
    dups = frozenset(s for s in valid if valid.count(s) > 1)
    return validate.mark_duplicates(clean, dups).to_pylist()


def invisible_in(s: str) -> set[str]:
    return {ch for ch in s if ch in hostile.INVISIBLE
            or (unicodedata.category(ch) == "Cc" and ch not in "\t\n\r")}


@pytest.mark.parametrize("case", hostile.ROWS, ids=lambda c: c.name)
def test_each_row_is_cleaned_or_rejected_with_its_reason(case):
    out = validate.clean_row(case.row, hostile.DUP_SKUS)
    assert out["reject_reason"] == case.reject, (out["reject_reason"], out["reject_detail"])
    if case.reject:
        assert out["reject_detail"]  # a reason always comes with a detail
    for f, v in out.items():
        if isinstance(v, str):
            assert not invisible_in(v), (f, v[:80])
            assert len(v) <= 4000 + 1, f
    title = out["title"] or ""
    for s in case.contains:
        assert s in title, (s, title)
    for s in case.absent:
        assert s not in title, (s, title)
    for fl in case.flags:
        assert fl in (out["input_flags"] or ""), (fl, out["input_flags"])
    for k, v in case.extra.items():
        assert out[k] == v


def test_corpus_as_a_drifted_catalog_through_clean_batch():
    """The corpus as Parquet would hold it (binary titles with invalid UTF-8, prices as strings,
    extra columns): one output row per input row, the expected reason per row."""
    t = hostile.catalog()
    canon = pa.table({c: t.column(src) for c, src in SOURCE_COLUMNS.items()})
    rows = clean_like_the_pipeline(canon)
    assert len(rows) == t.num_rows
    got = [r["reject_reason"] for r in rows]
    want = [c.reject for c in hostile.ROWS]
    # price-bytes is a latin-1 string in the Parquet form; title-int is "42": same outcomes
    assert got == want, [(c.name, g, w) for c, g, w in zip(hostile.ROWS, got, want) if g != w]
    for r in rows:
        for v in r.values():
            assert not isinstance(v, str) or not invisible_in(v)


@pytest.mark.parametrize("name", sorted(hostile.drifted_tables()))
def test_retyped_columns_clean_per_row(name):
    table, want = hostile.drifted_tables()[name]
    rows = validate.clean_batch(table).to_pylist()
    assert {r["sku"]: r["reject_reason"] for r in rows} == want


def _ctx() -> RunContext:
    return RunContext(run_id="r", tasks=("description",), locales=("en",), currency="USD",
                      model="m@1", sampling={"description": {"temperature": 0.7, "max_tokens": 8}})


def test_prompts_quote_catalog_text_as_data():
    """Template syntax in a title reaches the prompt as quoted text, never as template code; no
    invisible characters reach a prompt."""
    ctx = _ctx()
    for case in hostile.ROWS:
        row = validate.clean_row(case.row)
        if row["reject_reason"]:
            continue
        for item in work_items(row, ctx):
            prompt = engine_request(item, ctx, {})["prompt"]
            assert not invisible_in(prompt.replace("\n", "")), case.name
            assert "Title: \"" in prompt
            if case.name == "jinja-expr":
                assert 'Title: "{{ 7*7 }} {{ config.__class__' in prompt and "Title: \"49" not in prompt
            if case.name == "jinja-stmt":
                assert "{% for x in range(10**9) %}" in prompt and "xxxxxxxx" not in prompt
            if case.name == "prompt-injection":
                assert "Ignore previous" not in prompt


def _write(tmp_path, name: str, table: pa.Table) -> str:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, p)
    return str(p)


def _spec(catalog_uri: str, out: str, **columns) -> dict:
    return {"name": "hostile", "tasks": ["description"], "model": {"source": "pdgen-tiny"}, "output": {"uri": out}, "mode": "full",
            "catalog": {"uri": catalog_uri, "columns": {**SOURCE_COLUMNS, **columns}}}


def test_missing_required_column_stops_before_any_work(tmp_path):
    """A renamed title column: the job stops in preflight, naming the column, the mapping and the
    columns that exist; nothing is written to the output."""
    from pdgen_core.pipeline import GenerationRun

    t = hostile.catalog().rename_columns(
        ["product_id", "name", "price_usd", "brand", "category", "color", "description",
         "internal_notes", "legacy_id"])
    uri = _write(tmp_path, "cat/c.parquet", t)
    out = tmp_path / "out"
    spec = spec_from_dict(_spec(uri, str(out)))
    with pytest.raises(read.CatalogError) as ei:
        GenerationRun(spec).run()
    msg = str(ei.value)
    assert "'product_name'" in msg and "'title'" in msg and "catalog.columns.title" in msg
    assert "'name'" in msg  # the available columns, so the fix is obvious
    assert not out.exists()


def test_missing_sku_column_without_mapping(tmp_path):
    t = pa.table({"id": ["a"], "title": ["Mug"]})
    uri = _write(tmp_path, "c.parquet", t)
    cat = spec_from_dict({"name": "x", "output": {"uri": str(tmp_path / "o")},
                          "catalog": {"uri": uri}}).catalog
    with pytest.raises(read.CatalogError, match=r"no catalog\.columns\.sku mapping.*fix catalog\.columns\.sku"):
        read.column_plan(cat, {"title"})


def test_missing_mapped_optional_column_and_extra_columns(tmp_path):
    t = hostile.catalog()
    uri = _write(tmp_path, "c.parquet", t)
    ok = spec_from_dict(_spec(uri, str(tmp_path / "o"))).catalog
    plan = read.column_plan(ok, {"title", "brand", "price", "color"})
    assert "internal_notes" not in plan.values() and "legacy_id" not in plan.values()  # extras unread
    bad = spec_from_dict(_spec(uri, str(tmp_path / "o"), brand="brand_name")).catalog
    with pytest.raises(read.CatalogError, match=r"'brand_name'.*fix or remove catalog\.columns\.brand"):
        read.column_plan(bad, {"title", "brand"})


def test_column_retyped_between_files_stops_before_any_work(tmp_path):
    """One file has price as double, the next as string: the catalog cannot be read as one
    dataset. The job must stop in preflight naming the column and the files, not crash in Ray's
    schema inference (``ArrowTypeError: Unable to merge``)."""
    base = {"product_id": ["a", "b"], "product_name": ["Mug", "Lamp"]}
    _write(tmp_path, "cat/part-0.parquet", pa.table({**base, "price_usd": [1.0, 2.0]}))
    _write(tmp_path, "cat/part-1.parquet", pa.table({**base, "price_usd": ["abc", "3"]}))
    cat = spec_from_dict(_spec(str(tmp_path / "cat"), str(tmp_path / "o"))).catalog
    with pytest.raises(read.CatalogError, match=r"part-1\.parquet.*price_usd"):
        read.column_plan(cat, {"title", "price"})


# -- end to end: the corpus through the real engine ----------------------------------------------

@pytest.fixture(scope="module", params=[pytest.param("suite", marks=pytest.mark.e2e),
                                        pytest.param("chaos", marks=pytest.mark.chaos)])
def hostile_run(request, ray_local, s3):
    """One run over the corpus; in the suite and in ``make chaos``."""
    import time

    from pdgen_core.pipeline import run_job

    bucket = f"hostile-{request.param}"
    s3.create_bucket(bucket)
    t = hostile.catalog()
    loc = storage.resolve(f"s3://{bucket}/catalog/c.parquet")
    pq.write_table(t, loc.path, filesystem=loc.fs)
    spec = spec_from_dict({
        **_spec(loc.uri, f"s3://{bucket}/out/"),
        "sampling": {"max_tokens": 16}, "guardrails": {"min_chars": 1, "max_attempts": 1},
        "resources": {"batch_size": 16},
    })
    t0 = time.monotonic()
    rec = run_job(spec)
    return bucket, t, rec, time.monotonic() - t0


def test_hostile_corpus_end_to_end(hostile_run):
    bucket, table, rec, wall = hostile_run
    c = rec["counts"]
    n_cases = len(hostile.ROWS)
    assert c["read"] == table.num_rows == n_cases
    assert c["read"] == c["valid"] + c["invalid"]
    t = c["by_task"]["description"]
    assert t["planned"] == c["valid"] == t["accepted"] + t["rejected"] + t["unchanged"]
    want_reasons: dict[str, int] = {}
    for case in hostile.ROWS:
        if case.reject:
            want_reasons[case.reject] = want_reasons.get(case.reject, 0) + 1
    assert c["invalid"] == sum(want_reasons.values())
    got = {k: v for k, v in c["rejects_by_reason"]["description"].items()
           if k in want_reasons}
    assert got == want_reasons
    expected = chaos.expected_keys(table, SOURCE_COLUMNS)
    a = chaos.audit(f"s3://{bucket}/out/", "description", rec, expected)
    # sku values never become paths: every object the run wrote is under its output prefix
    keys = storage.list_files(storage.resolve(f"s3://{bucket}"), hidden=True)
    stray = [k for k in keys if not k.startswith((f"{bucket}/out/", f"{bucket}/catalog/"))]
    content = storage.resolve(f"s3://{bucket}/out/content/description")
    from pdgen_core.stages.commit import open_table

    table_ = open_table(content)  # the guard may reject every text of a random-weight model
    texts = table_.to_pyarrow_table().to_pylist() if table_ else []
    skus = {r["sku"] for r in texts}
    # What the model wrote is not input: a random-weight model emits control bytes. Counted, for
    # the output guardrails (see the issue report), not asserted here.
    out_invisible = sum(1 for r in texts if invisible_in(r["text"]))
    chaos.record("hostile input corpus", rows=table.num_rows, lost=a.lost, duplicated=a.duplicated,
                 result="ok" if a.ok and not stray else json.dumps(a.problems + stray)[:200],
                 wall_s=wall, faults={"hostile_rows": table.num_rows},
                 texts_with_invisible_chars=out_invisible,
                 invisible_chars=sorted({hex(ord(ch)) for r in texts for ch in invisible_in(r["text"])}))
    assert a.ok, a
    assert not stray, stray
    assert "../../etc/passwd" in skus | {r["sku"] for r in open_table(
        storage.resolve(f"s3://{bucket}/out/rejects/description")).to_pyarrow_table().to_pylist()}
    # catalog text reaches prompts clean: no invisible character of the corpus is in any prompt
    # (checked per row in test_prompts_quote_catalog_text_as_data)


def test_generated_text_loses_invisible_characters_before_the_checks():
    """A model can echo the bidi overrides, zero-width and tag characters it read: they are
    stripped from the committed text (newlines stay), and the guardrails judge what is kept."""
    from pdgen_core.stages.guard import judge

    ctx = _ctx()
    row = validate.clean_row({"sku": "S-1", "title": "Acme Red Cotton Tee", "brand": "Acme", "price": 10.0})
    item = work_items(row, ctx)[0]
    dirty = "\u202eA soft\u200b red\u2066 cotton tee\U000e0041.\nMachine wash\u0007 cold.\ufeff"
    out = judge({**item, "attempt": 1, "generated_text": dirty,
                 "num_input_tokens": 5, "num_generated_tokens": 9}, ctx)
    assert out["text"] == "A soft red cotton tee.\nMachine wash cold."
    assert not invisible_in(out["text"].replace("\n", ""))
