"""Issue 17's measured figure: 100 real Amazon rows the guard was never tuned on, through the real
job (Ray, the vLLM CPU engine, a local S3 server, Delta tables) on SmolLM2-135M-Instruct, five
tasks (review digests need reviews, which the sample lacks). Prints acceptance per task and
reason and ten accepted texts per task, and writes the run's counts and a seeded sample of
accepted texts with their facts (``pdgen audit``'s) for a person to read::

    nice -n 5 .venv/bin/python -m tests.corpus.amazon_heldout [--out /tmp/amazon100.json] [--rows 30]

The rows are ``random.Random(17)``'s shuffle of the 1,000-row sample, positions 500-599: the
labelled corpus (``make_smollm2_corpus.py``) used positions 0-64. About 20 minutes here.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
SAMPLE = REAL / "amazon-promptcloud-2020-sample" / "amazon_promptcloud_2020_sample1000.parquet"
TASKS = ["description", "blurb", "ad_copy", "faq", "social_post"]
HELD_OUT = slice(500, 600)


def rows(path: Path = SAMPLE, part: slice = HELD_OUT) -> list[dict[str, Any]]:
    """The held-out rows under canonical names, the facts as the corpus's prompts gave them."""
    import pyarrow.parquet as pq

    raw = pq.read_table(path).to_pylist()
    random.Random(17).shuffle(raw)
    out = []
    for r in raw[part]:
        about = (r["about_product"] or "").replace("Make sure this fits by entering your model number. | ", "")
        brand = r["brand_name"] if r["brand_name"] not in (None, "None", "") else None
        out.append({"sku": f"am-{r['uniq_id'][:12]}", "title": r["product_name"], "brand": brand,
                    "category": r["category"], "price": r["selling_price_usd_parsed"],
                    "attributes": " ".join(about.split())[:300] or None})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/amazon100.json")
    ap.add_argument("--per-task", type=int, default=12, help="accepted texts per task in the sample")
    ap.add_argument("--rows", type=int, default=100, help="the first N of the 100 held-out rows (a quicker read)")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pdgen_core import audit, storage
    from pdgen_core.pipeline import run_job
    from pdgen_core.ray_session import init_ray
    from pdgen_core.spec import spec_from_dict
    from pdgen_core.stages.commit import open_table
    from pdgen_core.testing.s3server import local_s3

    cat = rows()[:args.rows]
    with local_s3(buckets=("am100",)):
        init_ray()
        loc = storage.resolve("s3://am100/catalog/c.parquet")
        pq.write_table(pa.Table.from_pylist(cat), loc.path, filesystem=loc.fs)
        spec = spec_from_dict({
            "name": "am100", "catalog": {"uri": "s3://am100/catalog/", "currency": "USD"},
            "tasks": TASKS, "locales": ["en"], "segments": ["gift"], "output": {"uri": "s3://am100/out/"},
            "mode": "full", "model": {"source": "smollm2-135m-instruct"}, "guardrails": {"max_attempts": 2},
            "resources": {"batch_size": 64, "engine_threads": 2}})
        t0 = time.monotonic()
        rec = run_job(spec)
        wall = time.monotonic() - t0
        c = rec["counts"]
        titles = {r["sku"]: r["title"] for r in cat}
        print(f"wall {wall:.0f}s, {c['read']} rows read, {c['valid']} valid")
        for task in TASKS:
            b = c["by_task"][task]
            print(f"\n== {task}: accepted {b['accepted']}/{b['planned']}; {c['rejects_by_reason'].get(task)}")
            tab = open_table(storage.resolve("s3://am100/out/").child("content", task))
            for r in (tab.to_pyarrow_table().to_pylist()[:10] if tab else []):
                print(f"  [{titles.get(r['sku'], '')[:60]}] {r['text'][:300]}")
        sample = audit.sample("s3://am100/out/", rec["run_id"], per_task=args.per_task, seed=0)
        Path(args.out).write_text(json.dumps({"wall_s": wall, "counts": c, "sample": sample}, indent=1, default=str))
        print(f"\n{len(sample)} accepted texts with their facts -> {args.out}")


if __name__ == "__main__":
    main()
