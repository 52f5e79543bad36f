"""GPU benchmark for a real cluster (not run in CI): pdgen's output tokens/s per GPU beside vLLM's
own throughput benchmark on the same model.

    # on a Ray cluster with GPU workers (RAY_ADDRESS set), a real model folder or s3:// prefix:
    python -m pdgen_core.tools.bench_gpu --model s3://models/llama-3.1-8b-instruct/ \\
        --catalog s3://catalog/products/ --output s3://content/bench/ --rows 20000 --gpus 8

It runs (1) ``vllm bench throughput`` on one GPU of this node with prompts of the catalog's mean
prompt length and the same output length, and (2) a pdgen full run with ``replicas = --gpus`` and
``gpus_per_replica = --tp``, then prints output tokens/s per GPU for both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pdgen_core.models.resolve import resolve_model
from pdgen_core.pipeline import run_job
from pdgen_core.spec import spec_from_dict


def vllm_throughput(model: str, input_len: int, output_len: int, prompts: int) -> float:
    """Output tokens/s of ``vllm bench throughput`` (one GPU, random prompts of that length)."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "throughput", "--model", model,
           "--input-len", str(input_len), "--output-len", str(output_len),
           "--num-prompts", str(prompts), "--dataset-name", "random"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"([\d.]+)\s+output tokens/s", out) or re.search(r"Throughput:.*?([\d.]+) tokens/s", out)
    if not m:
        raise RuntimeError(f"could not read vLLM's throughput from:\n{out[-2000:]}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--gpus", type=int, default=1, help="total GPUs pdgen may use")
    ap.add_argument("--tp", type=int, default=1, help="GPUs per replica (tensor parallel)")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--input-len", type=int, default=220, help="mean prompt tokens of the catalog")
    a = ap.parse_args()

    local = str(resolve_model(a.model))
    ref = vllm_throughput(local, a.input_len, a.max_tokens, min(a.rows, 2000))
    spec = spec_from_dict({
        "name": "bench-gpu", "catalog": {"uri": a.catalog, "limit": a.rows}, "tasks": ["description"],
        "model": {"source": a.model, "max_model_len": 2048}, "output": {"uri": a.output}, "mode": "full",
        "sampling": {"max_tokens": a.max_tokens},
        "resources": {"replicas": a.gpus // a.tp, "gpus_per_replica": a.tp, "batch_size": 256,
                      "memory_fraction": 0.9},
    })
    t0 = time.monotonic()
    rec = run_job(spec)
    wall = time.monotonic() - t0
    per_gpu = rec["tokens"]["out"] / rec["timing"]["generate_s"] / a.gpus
    print(json.dumps({"vllm_bench_tokens_per_s_per_gpu": ref, "pdgen_tokens_per_s_per_gpu": per_gpu,
                      "ratio": per_gpu / ref, "pdgen_wall_s": wall, "rows": rec["counts"]["read"]}, indent=2))


if __name__ == "__main__":
    main()
