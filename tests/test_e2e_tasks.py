"""All six tasks in one job over one engine pool, two locales, review_digest on synthetic and on
the real Women's Clothing reviews, zh on the real Chinese reviews. Real Ray, vLLM CPU, local S3.

The model is tiny, so many texts are rejected; these tests assert that every row is accounted
for with a reason, that each task commits to its own table with its locale, and that the
rejects name the checks that fired.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pdgen_core import storage
from pdgen_core.pipeline import run_job
from pdgen_core.spec import spec_from_dict
from pdgen_core.stages.commit import open_table
from pdgen_core.synth import make_catalog, make_reviews

from conftest import real_data

pytestmark = pytest.mark.e2e
ALL = ["description", "review_digest", "blurb", "ad_copy", "faq", "social_post"]


def tables(out: str, task: str):
    base = storage.resolve(out)
    c, r = open_table(base.child("content", task)), open_table(base.child("rejects", task))
    return (c.to_pyarrow_table().to_pylist() if c else []), (r.to_pyarrow_table().to_pylist() if r else [])


@pytest.fixture(scope="module")
def all_tasks_run(tiny_service, s3):
    s3.create_bucket("e2e-tasks")
    cat = make_catalog(12, seed=11)
    for name, t in (("catalog/c.parquet", cat), ("reviews/r.parquet", make_reviews(cat, per_sku=(0, 7)))):
        loc = storage.resolve(f"s3://e2e-tasks/{name}")
        pq.write_table(t, loc.path, filesystem=loc.fs)
    spec = spec_from_dict({
        "name": "all-tasks",
        "catalog": {"uri": "s3://e2e-tasks/catalog/", "currency": "USD",
                    "columns": {"sku": "product_id", "title": "product_name", "price": "price_usd",
                                "brand": "brand", "category": "category", "color": "color",
                                "material": "material"}},
        "reviews": {"uri": "s3://e2e-tasks/reviews/", "columns": {"sku": "product_id", "text": "review_text"}},
        "tasks": ALL, "locales": ["en", "zh"], "segments": ["budget", "gift"],
        "output": {"uri": "s3://e2e-tasks/out/"}, "mode": "full",
        "model": {"source": "pdgen-tiny", "max_model_len": 1024},
        "sampling": {"max_tokens": 40}, "guardrails": {"min_chars": 1, "max_attempts": 2},
        "resources": {"batch_size": 64},
    })
    return spec, run_job(spec), cat


def test_every_task_accounted_per_locale(all_tasks_run):
    spec, rec, cat = all_tasks_run
    c = rec["counts"]
    assert set(c["by_task"]) == set(ALL)
    for task, v in c["by_task"].items():
        variants = 2 if task == "blurb" else 1
        assert v["planned"] == 12 * 2 * variants, (task, v)
        assert v["planned"] == v["accepted"] + v["rejected"] + v["unchanged"]
        content, rejects = tables(spec.output.uri, task)
        assert len(content) == v["accepted"] and len(rejects) == v["rejected"]
        assert {r["locale"] for r in content + rejects} <= {"en", "zh"}
        assert all(r["reason"] for r in rejects)
        assert all(r["task"] == task for r in content)


def test_review_digest_skips_too_few_reviews_and_is_labelled(all_tasks_run):
    spec, rec, cat = all_tasks_run
    counts = {}
    for r in make_reviews(cat, per_sku=(0, 7)).to_pylist():
        counts[r["product_id"]] = counts.get(r["product_id"], 0) + 1
    few = {s for s in cat.column("product_id").to_pylist() if counts.get(s, 0) < 3}
    content, rejects = tables(spec.output.uri, "review_digest")
    skipped = {r["sku"] for r in rejects if r["reason"] == "too_few_reviews"}
    assert skipped == few and few  # the synthetic reviews leave some products short
    assert all(r["stage"] == "plan" for r in rejects if r["reason"] == "too_few_reviews")
    assert not few & {r["sku"] for r in content}
    label = {"en": "Summary of customer reviews", "zh": "顾客评价摘要"}
    assert all(r["label"] == label[r["locale"]] for r in content)


def test_blurb_variants_and_guard_reasons(all_tasks_run):
    spec, rec, _ = all_tasks_run
    content, rejects = tables(spec.output.uri, "blurb")
    assert {r["variant"] for r in content + rejects} == {"budget", "gift"}
    # A random-weight model writes the wrong script for zh: nothing in zh is accepted that the
    # language guardrail refuses (a text cut at max_tokens is refused as truncated first).
    from pdgen_core.guardrails import GuardContext
    from pdgen_core.guardrails.language import check_language

    for task in ("description", "blurb", "social_post"):
        for r in tables(spec.output.uri, task)[0]:
            if r["locale"] == "zh":
                assert check_language(r["text"], GuardContext(locale="zh")) is None, r["text"]
    zh_rejects = [r for t in ALL for r in tables(spec.output.uri, t)[1] if r["locale"] == "zh"]
    assert zh_rejects and all(r["reason"] for r in zh_rejects)
    for task in ("ad_copy", "faq"):
        for r in tables(spec.output.uri, task)[1]:
            assert r["stage"] in ("guard", "generate", "plan")
    assert all(r["attempts"] >= 1 for t in ALL for r in tables(spec.output.uri, t)[0])
    # The guard retry round ran, its requests carrying sampling.retry's repetition penalty, and
    # vLLM took them: no reject is an engine error.
    guard_rejects = [r for t in ALL for r in tables(spec.output.uri, t)[1] if r["stage"] == "guard"]
    assert guard_rejects and all(r["attempts"] == 2 for r in guard_rejects)
    errors = [(t, r["attempts"], r["detail"][:200]) for t in ALL for r in tables(spec.output.uri, t)[1]
              if r["reason"] == "engine_error"]
    assert not errors, errors


def test_review_digest_on_real_reviews(tiny_service, s3):
    path = real_data("womens-clothing-reviews/womens_clothing_ecommerce_reviews.parquet")
    s3.create_bucket("e2e-realrev")
    rv = pq.read_table(path)
    ids = sorted({i for i in rv.column("clothing_id").to_pylist()})[:30]
    first = {}
    for r in rv.select(["clothing_id", "class_name", "department_name"]).to_pylist():
        if r["clothing_id"] in ids and r["clothing_id"] not in first:
            first[r["clothing_id"]] = r
    cat = pa.table({"clothing_id": [str(i) for i in ids],
                    "name": [f"{first[i]['class_name'] or 'Clothing'} ({first[i]['department_name'] or 'General'})" for i in ids]})
    for name, t in (("catalog/c.parquet", cat), ("reviews/r.parquet", rv)):
        loc = storage.resolve(f"s3://e2e-realrev/{name}")
        pq.write_table(t, loc.path, filesystem=loc.fs)
    spec = spec_from_dict({
        "name": "real-reviews",
        "catalog": {"uri": "s3://e2e-realrev/catalog/", "columns": {"sku": "clothing_id", "title": "name"}},
        "reviews": {"uri": "s3://e2e-realrev/reviews/",
                    "columns": {"sku": "clothing_id", "text": "review_text", "rating": "rating"}},
        "tasks": ["review_digest"], "output": {"uri": "s3://e2e-realrev/out/"}, "mode": "full",
        "model": {"source": "pdgen-tiny", "max_model_len": 1024}, "sampling": {"max_tokens": 32},
        "guardrails": {"min_chars": 1, "max_attempts": 1},
    })
    rec = run_job(spec)
    v = rec["counts"]["by_task"]["review_digest"]
    assert v["planned"] == 30 == v["accepted"] + v["rejected"]
    n_reviews = {}
    for i in rv.column("clothing_id").to_pylist():
        n_reviews[i] = n_reviews.get(i, 0) + 1
    few = sum(1 for i in ids if n_reviews[i] < 3)
    assert rec["counts"]["rejects_by_reason"]["review_digest"].get("too_few_reviews", 0) == few


def test_zh_locale_on_real_chinese_reviews(tiny_service, s3):
    path = real_data("zh-online-shopping-10cats/online_shopping_10_cats.parquet")
    s3.create_bucket("e2e-zh")
    zh = pq.read_table(path)
    cats = sorted(set(zh.column("category_en").to_pylist()))[:4]
    names = {r["category_en"]: r["category_zh"] for r in zh.select(["category_en", "category_zh"]).to_pylist()}
    cat = pa.table({"sku": cats, "title": [names[c] for c in cats]})
    small = pa.concat_tables([zh.filter(pa.compute.equal(zh.column("category_en"), c)).slice(0, 5) for c in cats])
    for name, t in (("catalog/c.parquet", cat), ("reviews/r.parquet", small)):
        loc = storage.resolve(f"s3://e2e-zh/{name}")
        pq.write_table(t, loc.path, filesystem=loc.fs)
    spec = spec_from_dict({
        "name": "zh", "catalog": {"uri": "s3://e2e-zh/catalog/", "currency": "CNY"},
        "reviews": {"uri": "s3://e2e-zh/reviews/", "columns": {"sku": "category_en", "text": "review_text"}},
        "tasks": ["description", "review_digest"], "locales": ["zh"], "output": {"uri": "s3://e2e-zh/out/"},
        "mode": "full", "model": {"source": "pdgen-tiny", "max_model_len": 1024}, "sampling": {"max_tokens": 24},
        "guardrails": {"min_chars": 1, "max_attempts": 1},
    })
    rec = run_job(spec)
    for task in ("description", "review_digest"):
        v = rec["counts"]["by_task"][task]
        assert v["planned"] == 4 == v["accepted"] + v["rejected"]
        content, rejects = tables(spec.output.uri, task)
        assert {r["locale"] for r in content + rejects} == {"zh"}
