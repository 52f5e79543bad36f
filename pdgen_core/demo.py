"""``make demo``: the main job end to end on embedded defaults, nothing to configure.

Starts a local S3 endpoint (moto's server on 127.0.0.1), writes a synthetic catalog with a few
deliberately bad rows, runs the job with ``pdgen-tiny`` on in-process Ray and the vLLM CPU engine,
prints the summary, samples and where the output lives, then mirrors the output to ./demo-out so
that it outlives the in-memory S3 server.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml
from rich.console import Console

console = Console()
DEMO_SPEC = Path(__file__).parent / "configs" / "demo.yaml"
ROWS, BAD_ROWS = 200, 8


def show_samples(output_uri: str, task: str, n: int = 2) -> None:
    from pdgen_core import storage
    from pdgen_core.stages.commit import open_table

    dt = open_table(storage.resolve(output_uri).child("content", task))
    if dt is None:
        console.print(f"(no {task} content committed)")
        return
    rows = dt.to_pyarrow_table(columns=["sku", "text"]).slice(0, n).to_pylist()
    for r in rows:
        console.print(f"[bold]{r['sku']}[/bold] ({task}): {r['text'][:300]}")


def main() -> None:
    from pdgen_core import log, storage
    from pdgen_core.cli import print_summary
    from pdgen_core.pipeline import run_job
    from pdgen_core.s3server import local_s3
    from pdgen_core.spec import spec_from_dict
    from pdgen_core.synth import make_catalog, write_catalog, write_reviews

    log.configure()
    spec_dict = yaml.safe_load(DEMO_SPEC.read_text())
    with local_s3(buckets=("catalog", "content")) as s3:
        console.print(f"local S3 endpoint: {s3.endpoint}")
        write_catalog(spec_dict["catalog"]["uri"], ROWS, files=2, bad_rows=BAD_ROWS)
        write_reviews(spec_dict["reviews"]["uri"], make_catalog(ROWS))
        console.print(f"synthetic catalog: {ROWS} products + {BAD_ROWS} bad rows -> {spec_dict['catalog']['uri']}"
                      f"; synthetic reviews -> {spec_dict['reviews']['uri']}")
        _ensure_model()
        spec = spec_from_dict(spec_dict)
        record = run_job(spec)
        print_summary(record)
        for task in spec.tasks:
            show_samples(spec.output.uri, task)
        _after_first_run(spec, record)
        dest = Path(os.environ.get("PDGEN_DEMO_OUT", "demo-out")).resolve()
        shutil.rmtree(dest, ignore_errors=True)
        storage.download_prefix(storage.resolve(spec.output.uri), dest)
        console.print(f"output: {spec.output.uri} on {s3.endpoint} (in memory), mirrored to {dest}/ "
                      f"(Delta tables content/<task>, rejects/<task>; run records runs/<run_id>.json)")


def _ensure_model() -> None:
    """Train the tiny model from scratch once (cached; a few minutes on 2 cores)."""
    from pdgen_core.finetune.scratch import ensure_trained_tiny

    path = ensure_trained_tiny()
    console.print(f"model: pdgen-tiny trained from scratch, cached at {path}")


def _after_first_run(spec, record) -> None:
    """A scheduler's refresh: three prices change; only those rows regenerate."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    from pdgen_core import storage
    from pdgen_core.cli import one_line
    from pdgen_core.pipeline import run_job

    loc = storage.resolve(spec.catalog.uri)
    first = storage.list_files(loc, ".parquet")[0]
    t = pads.dataset(first, filesystem=loc.fs).to_table()
    skus = t.column("product_id").to_pylist()[:3]
    bumped = pc.if_else(pc.is_in(t.column("product_id"), pa.array(skus)),
                        pc.add(t.column("price_usd"), 5.0), t.column("price_usd"))
    pq.write_table(t.set_column(t.schema.get_field_index("price_usd"), "price_usd", bumped),
                   first, filesystem=loc.fs)
    console.print(f"\n[bold]refresh[/bold]: prices of {skus} changed by +5.00 USD")
    rec = run_job(spec)
    console.print(one_line(rec), highlight=False)
    reasons = rec["counts"].get("rejects_by_reason", {})
    for task, v in rec["counts"]["by_task"].items():
        # Items a task cannot run on (a product with too few reviews for a digest) are rejected
        # at planning on every run; they are not generated.
        skipped = reasons.get(task, {}).get("too_few_reviews", 0)
        console.print(f"  {task}: planned {v['planned']}, regenerated {v['accepted'] + v['rejected'] - skipped}, "
                      f"unchanged {v['unchanged']}" + (f", skipped (too few reviews) {skipped}" if skipped else ""))


if __name__ == "__main__":
    main()
