"""Generate raw SmolLM2-135M-Instruct outputs of pdgen's own chat prompts on real rows, for the
hand-labelled guardrail corpus (``tests/corpus/smollm2_labelled.jsonl``). Not run by the tests:
a person runs it, reads every output and labels it (publishable or not, and why).

    VLLM_ENABLE_V1_MULTIPROCESSING=0 .venv/bin/python tests/corpus/make_smollm2_corpus.py \\
        --model /tmp/smol-hf --out /tmp/smollm2_raw.jsonl

Rows: the first Myntra rows after a fixed shuffle (descriptions, blurbs, social posts) and
Amazon rows (descriptions, ad copy). Prompts are ``Task.messages`` through the model's chat
template (``pdgen_core.models.chat.render``); sampling is the task's ``chat_sampling`` with a
per-row seed, so a rerun writes the same texts. The output holds, per text, only the facts the
prompt showed (Amazon's ``about_product`` capped at the template's 300 characters).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
# (task, source, rows): about 200 prompts in all, small enough for a 2-core CPU run.
PLAN = [("description", "myntra", 70), ("description", "amazon", 40), ("blurb", "myntra", 35),
        ("social_post", "myntra", 30), ("ad_copy", "amazon", 25)]
SEGMENTS = ("general", "budget", "gift")


def myntra_rows(n: int, skip: int) -> list[tuple[str, dict, str]]:
    import pyarrow.parquet as pq

    rows = pq.read_table(REAL / "myntra-fashion-catalog" / "myntra_products_catalog.parquet").to_pylist()
    random.Random(17).shuffle(rows)
    out = []
    for r in rows[skip: skip + n]:
        facts = {"title": r["product_name"], "brand": r["brand"], "gender": r["gender"],
                 "price": float(r["price_inr"]), "color": (r["primary_color"] or "").strip() or None}
        out.append((f"myntra:{r['product_id']}", facts, "INR"))
    return out


def amazon_rows(n: int, skip: int) -> list[tuple[str, dict, str]]:
    import pyarrow.parquet as pq

    path = REAL / "amazon-promptcloud-2020-sample" / "amazon_promptcloud_2020_sample1000.parquet"
    rows = pq.read_table(path).to_pylist()
    random.Random(17).shuffle(rows)
    out = []
    for r in rows[skip: skip + n]:
        about = (r["about_product"] or "").replace("Make sure this fits by entering your model number. | ", "")
        brand = r["brand_name"] if r["brand_name"] not in (None, "None", "") else None
        facts = {"title": r["product_name"], "brand": brand, "category": r["category"],
                 "price": r["selling_price_usd_parsed"], "attributes": " ".join(about.split())[:300] or None}
        out.append((f"amazon:{r['uniq_id'][:12]}", facts, "USD"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/tmp/smol-hf")
    ap.add_argument("--out", default="/tmp/smollm2_raw.jsonl")
    args = ap.parse_args()

    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from pdgen_core.models.chat import render
    from pdgen_core.tasks import TASKS

    jobs, skips = [], {"myntra": 0, "amazon": 0}
    for task, source, n in PLAN:
        rows = (myntra_rows if source == "myntra" else amazon_rows)(n, skips[source])
        skips[source] += n
        for i, (sku, facts, currency) in enumerate(rows):
            variant = SEGMENTS[i % len(SEGMENTS)] if task == "blurb" else ""
            prompt = render(args.model, TASKS[task].messages(facts, "en", currency, variant))
            kw = dict(TASKS[task].chat_sampling, seed=1000 + len(jobs))
            if TASKS[task].json_schema:
                kw["structured_outputs"] = StructuredOutputsParams(json=TASKS[task].json_schema)
            jobs.append(({"task": task, "sku": sku, "currency": currency, "variant": variant,
                          "facts": {k: v for k, v in facts.items() if v is not None}},
                         prompt, SamplingParams(**kw)))

    llm = LLM(args.model, dtype="float32", enforce_eager=True, gpu_memory_utilization=0.3,
              max_model_len=2048, enable_chunked_prefill=False, distributed_executor_backend="uni")
    outs = llm.generate([p for _, p, _ in jobs], [s for _, _, s in jobs])
    with open(args.out, "w", encoding="utf-8") as f:
        for (meta, _, _), o in zip(jobs, outs):
            c = o.outputs[0]
            f.write(json.dumps({**meta, "text": c.text.strip(), "finish_reason": c.finish_reason},
                               ensure_ascii=False) + "\n")
    print(f"wrote {len(jobs)} texts to {args.out}")


if __name__ == "__main__":
    main()
