"""``make bench``: side-by-side measurements in one run; ratios, not absolute times, are the claim.

    python -m pdgen_core.tools.bench [--rows 2000] [--incr-rows 100000] [--plan-rows 1000000,5000000]
    python -m pdgen_core.tools.bench --plan-udf 200000,1000000   (the plan step alone, old path beside new)

a. pipeline overhead: pdgen end to end (Parquet on the local S3 endpoint -> plan -> generate ->
   guardrails -> Delta commit) against plain ``vllm.LLM.generate`` on the same prompts, model,
   sampling and per-row seeds, at ``--rows`` and three times as many. ``pipeline_vs_vllm`` is the
   ratio of marginal rates between the two sizes: engine start and every other fixed cost OUT of
   both. The ratio with engine start IN both (whole pdgen run against ``LLM(...)`` + ``generate``)
   is given beside it, at the larger size.
b. the usual transformers loop (``model.generate`` in batches of 16) on the same prompts.
c. incremental refresh: 1% of N rows changed -> refresh time against a full run and against the
   plan-only cost.
d. plan at scale: read -> validate -> fingerprint -> anti-join, rows/s and peak RSS of the driver
   and of the Ray workers (sampled), per size; and the plan of a refresh from a changes feed
   naming 10 skus, with the feed pushed into the reads and, beside it, reading everything.
e. engine start, and time to the first committed row (a one-row run).
f. the real model (``--only real``): ``smollm2-135m-instruct`` on real Myntra rows (the synthetic
   catalog when the shared data is absent), ``description`` in the chat format. Two ratios, each the
   median of ``--real-repeats`` interleaved repeats, with their spread: pdgen against plain
   ``vllm.LLM.chat`` on the same messages, sampling, per-row seeds and engine settings (marginal
   rates, as in a.), and vLLM against the transformers ``generate`` loop on the same prompts.

Figures go to ``bench/results/<date>.json`` and a table is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from pdgen_core import log, storage
from pdgen_core.context_from_spec import build_context
from pdgen_core.guardrails import GUARDRAIL_SET_VERSION
from pdgen_core.models.chat import eos_token_ids
from pdgen_core.models.resolve import model_identity, resolve_model
from pdgen_core.pipeline import GenerationRun, run_job
from pdgen_core.ray_session import init_ray
from pdgen_core.spec import spec_from_dict
from pdgen_core.stages import commit
from pdgen_core.stages.generate import engine_kwargs, engine_threads
from pdgen_core.stages.plan import work_items
from pdgen_core.stages.prompt import engine_request
from pdgen_core.stages.validate import clean_row
from pdgen_core.synth import write_catalog
from pdgen_core.tasks import TASKS
from pdgen_core.testing.s3server import local_s3

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
COLUMNS = {"sku": "product_id", "title": "product_name", "price": "price_usd", "brand": "brand",
           "category": "category", "color": "color", "material": "material", "gender": "gender"}


ALL_SECTIONS = frozenset({"pipeline", "incremental", "plan", "start", "real"})
REAL_MODEL = "smollm2-135m-instruct"
MYNTRA = (Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "myntra-fashion-catalog"
          / "myntra_products_catalog.parquet")
MYNTRA_COLUMNS = {"sku": "product_id", "title": "product_name", "brand": "brand", "price": "price_inr",
                  "gender": "gender", "color": "primary_color"}


def spec_dict(catalog: str, out: str, max_tokens: int, mode: str = "full", batch: int = 256,
              model: str = "pdgen-tiny", columns: dict | None = None, currency: str = "USD",
              sampling: dict | None = None, memory_fraction: float | None = None) -> dict:
    return {
        "name": "bench", "catalog": {"uri": catalog, "columns": columns or COLUMNS, "currency": currency},
        "tasks": ["description"], "model": {"source": model}, "output": {"uri": out}, "mode": mode,
        "sampling": {"max_tokens": max_tokens, **({"temperature": 0.8} if sampling is None else sampling)},
        "guardrails": {"min_chars": 1, "max_attempts": 1},
        "resources": {"batch_size": batch, "max_concurrent_batches": 4,
                      **({"memory_fraction": memory_fraction} if memory_fraction else {})},
    }


class RssSampler:
    """Peak memory of this process and of Ray's worker processes, sampled every 0.25 s: RSS, and
    RSS less shared pages (Ray's object store is shared memory that workers map, so their RSS
    counts blocks they only read)."""

    def __init__(self):
        self.driver = 0
        self.workers = 0
        self.workers_private = 0
        self.workers_total_private = 0
        self.worker_peak_name = ""  # the process that held workers_private
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            self.driver = max(self.driver, me.memory_info().rss)
            total = 0
            for p in psutil.process_iter(["name", "cmdline"]):
                try:
                    if any(a.startswith("ray::") for a in (p.info["cmdline"] or [])[:1]):
                        m = p.memory_info()
                        self.workers = max(self.workers, m.rss)
                        private = m.rss - getattr(m, "shared", 0)
                        if private > self.workers_private:
                            self.workers_private = private
                            self.worker_peak_name = p.info["cmdline"][0][:120]
                        total += private
                except (psutil.Error, TypeError):
                    pass
            self.workers_total_private = max(self.workers_total_private, total)
            self._stop.wait(0.25)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def prompts_for(sd: dict) -> dict:
    """The exact prompts and sampling params pdgen sends for the catalog of the spec dict ``sd``
    (same code path), and in the chat format the messages they were rendered from:
    ``{"prompts", "params", "messages"}`` (``messages`` is None for completion prompts)."""
    import pyarrow.dataset as pads

    spec = spec_from_dict(sd)
    path = resolve_model(spec.model.source)
    ctx = build_context(spec, "bench", model_identity(path), frozenset(), model_path=path)
    loc = storage.resolve(spec.catalog.uri)
    t = pads.dataset(storage.list_files(loc, ".parquet"), filesystem=loc.fs).to_table()
    prompts, params, messages = [], [], []
    for raw in t.to_pylist():
        row = clean_row({c: raw.get(s) for c, s in sd["catalog"]["columns"].items()})
        if row["reject_reason"]:
            continue
        for item in work_items(row, ctx):
            req = engine_request(item, ctx, {})
            prompts.append(req["prompt"])
            params.append(req["sampling_params"])
            if ctx.prompt_format == "chat":  # what engine_request rendered ``prompt`` from
                messages.append(TASKS[item["task"]].messages(
                    json.loads(item["fields_json"]), item["locale"], ctx.currency, variant=item["variant"]))
    assert GUARDRAIL_SET_VERSION
    return {"prompts": prompts, "params": params, "messages": messages if ctx.prompt_format == "chat" else None}


def raw_vllm(prompts_file: str, out_file: str) -> None:
    """Child process: plain vLLM (engine kwargs as pdgen's for the spec's model on the CPU; vLLM's
    own executor unless VLLM_ENABLE_V1_MULTIPROCESSING=0) on each prompt set in turn, one engine:
    the time of each ``generate`` call, or of each ``chat`` call for a set that carries messages.

    ``prompts_file``: ``{"spec": <spec dict>, "sets": [{"prompts", "params", "messages"}, ...]}``."""
    from vllm import LLM, SamplingParams

    data = json.loads(Path(prompts_file).read_text())
    spec = spec_from_dict(data["spec"])
    t0 = time.monotonic()
    path = resolve_model(spec.model.source)
    kw = engine_kwargs(spec, enable_lora=False, model_path=path)
    if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") != "0":
        kw.pop("distributed_executor_backend", None)  # vLLM's default executor (it forces it anyway)
    llm = LLM(model=str(path), **kw)
    start = time.monotonic() - t0
    runs = []
    for s in data["sets"]:
        params = [SamplingParams(**p) for p in s["params"]]
        t1 = time.monotonic()
        if s.get("messages"):
            # As pdgen renders them (models/chat.py): the model's template, thinking off.
            outs = llm.chat(s["messages"], params, use_tqdm=False, add_generation_prompt=True,
                            chat_template_kwargs={"enable_thinking": False})
        else:
            outs = llm.generate(s["prompts"], params, use_tqdm=False)
        runs.append({"rows": len(outs), "generate_s": time.monotonic() - t1,
                     "tokens_out": sum(len(o.outputs[0].token_ids) for o in outs),
                     "tokens_in": sum(len(o.prompt_token_ids or ()) for o in outs)})
    Path(out_file).write_text(json.dumps({"engine_start_s": start, "engine_kwargs": kw, "runs": runs}, default=str))


def run_raw_vllm(sd: dict, sets: list[dict], tmp: Path, env: dict[str, str]) -> dict:
    """``raw_vllm`` in a fresh process (the engine lives and dies with it), engine set up for the
    spec dict ``sd``, with ``env`` added to this environment."""
    pf, of = tmp / "prompts.json", tmp / "raw.json"
    pf.write_text(json.dumps({"spec": sd, "sets": sets}))
    subprocess.run([sys.executable, "-m", "pdgen_core.tools.bench", "--raw-vllm", str(pf), str(of)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    return json.loads(of.read_text())


def hf_loop(prompts: list[str], max_tokens: int, batch: int = 16, model: str = "pdgen-tiny",
            sampling: dict | None = None, threads: int | None = None) -> dict:
    """The usual transformers loop: ``model.generate`` over batches of ``batch`` left-padded
    prompts, model load out of the time. A row's tokens count up to its first end token, as
    vLLM counts them. ``sampling``: temperature, top_p, repetition_penalty (default: a.'s);
    ``threads``: torch threads for the loop (default: torch's own)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(model)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    eos = list(eos_token_ids(path)) or [tok.eos_token_id]
    if tok.pad_token_id is None:  # left padding needs one; it is masked out
        tok.pad_token_id = eos[0]
    pad = tok.pad_token_id
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    s = {"temperature": 0.8, "top_p": 0.95} if sampling is None else sampling
    gen_kw = {k: s[k] for k in ("temperature", "top_p", "repetition_penalty") if s.get(k) is not None}
    gen_kw["do_sample"] = gen_kw.get("temperature", 1.0) > 0
    if not gen_kw["do_sample"]:
        gen_kw.pop("temperature", None)
        gen_kw.pop("top_p", None)
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    t0 = time.monotonic()
    tokens = 0
    try:
        with torch.inference_mode():
            for i in range(0, len(prompts), batch):
                enc = tok(prompts[i:i + batch], return_tensors="pt", padding=True)
                out = lm.generate(**enc, max_new_tokens=max_tokens, **gen_kw, pad_token_id=pad, eos_token_id=eos)
                for row in out[:, enc["input_ids"].shape[1]:].tolist():
                    ends = [j for j, t in enumerate(row) if t in eos]
                    tokens += ends[0] + 1 if ends else len(row)
    finally:
        torch.set_num_threads(saved)
    sec = time.monotonic() - t0
    return {"rows": len(prompts), "tokens_out": tokens, "total_s": sec, "tokens_per_s": tokens / sec,
            "batch": batch, "threads": threads or saved, "sampling": gen_kw}


def run_pdgen(spec: dict, **kw) -> tuple[dict, float]:
    t0 = time.monotonic()
    rec = run_job(spec_from_dict(spec), **kw)
    return rec, time.monotonic() - t0


def bench_pipeline(rows: int, max_tokens: int, tmp: Path) -> dict:
    """pdgen and plain vLLM on the same prompts at two sizes, ``rows`` and ``3 * rows``.

    Engine start IN both: each pdgen run is timed whole (engine start, Ray Data passes, commit),
    plain vLLM as ``LLM(...)`` plus its ``generate`` (ratio at the larger size). Engine start OUT
    of both: the marginal rate between the two sizes, extra output tokens over extra seconds,
    in which every fixed cost (engine start, plan passes, commit) cancels; plain vLLM's the same
    way over its two ``generate`` calls on one engine. The marginal ratio is the rate a long
    catalog run goes at, against plain vLLM's."""

    sizes = (rows, 3 * rows)
    sets = []
    for n in sizes:
        write_catalog(f"s3://bench/pipe-{n}/", n, files=4)
        sets.append(prompts_for(spec_dict(f"s3://bench/pipe-{n}/", "/tmp/unused", max_tokens)))
    # Plain vLLM twice: as a user gets it (vLLM's default CPU executor: a worker process pinned
    # to one core, one core kept for the scheduler), and set up as pdgen sets up its engine (the
    # worker in process, one torch thread). The headline ratio is against the faster of the two.
    baselines = {}
    for name, env in (("default", {}), ("in_process", {"VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                                                       "OMP_NUM_THREADS": "1"})):
        baselines[name] = run_raw_vllm(spec_dict(f"s3://bench/pipe-{rows}/", "/tmp/unused", max_tokens),
                                       sets, tmp, env)
    # A small run first, so that both measured runs find Ray's workers and imports warm.
    write_catalog("s3://bench/pipe-warm/", 100, files=1)
    run_pdgen(spec_dict("s3://bench/pipe-warm/", "s3://bench/pipe-warm-out/", max_tokens))
    pd = []
    for n in sizes:
        rec, wall = run_pdgen(spec_dict(f"s3://bench/pipe-{n}/", f"s3://bench/pipe-out-{n}/", max_tokens))
        pd.append({"rows": rec["counts"]["accepted"] + rec["counts"]["rejected"], "tokens_out": rec["tokens"]["out"],
                   "total_s": wall, "generate_s": rec["timing"]["generate_s"],
                   "tokens_per_s": rec["tokens"]["out"] / wall})
    small, big = pd
    pd_marginal = marginal_rate(small, big, "total_s")
    vllm = {}
    for name, raw in baselines.items():
        for r in raw["runs"]:
            r["total_s"] = raw["engine_start_s"] + r["generate_s"]
            r["tokens_per_s"] = r["tokens_out"] / r["total_s"]
        rs, rb = raw["runs"]
        vllm[name] = {"engine_start_s": raw["engine_start_s"], "runs": raw["runs"],
                      "marginal_tokens_per_s": marginal_rate(rs, rb, "generate_s"),
                      "same_tokens": [p["tokens_out"] == r["tokens_out"] for p, r in zip(pd, raw["runs"])]}
    best = max(vllm, key=lambda k: vllm[k]["marginal_tokens_per_s"])
    rb = vllm[best]["runs"][1]
    return {
        "pdgen": big, "pdgen_runs": pd, "vllm": {**rb, "engine_start_s": vllm[best]["engine_start_s"]},
        "vllm_baselines": vllm, "vllm_baseline_used": best,
        "engine_start": "out of both (ratio_marginal, the headline); in both (ratio_tokens_per_s, at the larger size)",
        "ratio_tokens_per_s": big["tokens_per_s"] / rb["tokens_per_s"],
        "ratio_rows_per_s": (big["rows"] / big["total_s"]) / (rb["rows"] / rb["total_s"]),
        "pdgen_marginal_tokens_per_s": pd_marginal,
        "vllm_marginal_tokens_per_s": vllm[best]["marginal_tokens_per_s"],
        "ratio_marginal": pd_marginal / vllm[best]["marginal_tokens_per_s"],
        "ratio_marginal_by_baseline": {k: pd_marginal / v["marginal_tokens_per_s"] for k, v in vllm.items()},
        "_prompts": sets[0]["prompts"],
    }


def marginal_rate(small: dict, big: dict, seconds: str) -> float:
    """Extra output tokens over extra seconds between two runs: what fixed costs both runs pay
    (engine start, plan passes, commit) cancels."""
    return (big["tokens_out"] - small["tokens_out"]) / (big[seconds] - small[seconds])


def spread(values: list[float]) -> dict:
    """Median of repeats, with the values and their range (this shared box swings by up to 2x)."""
    import statistics

    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values), "values": values,
            "spread": (max(values) - min(values)) / med if med else float("nan")}


def real_catalogs(sizes: tuple[int, ...]) -> tuple[str, dict, str]:
    """Catalogs of each size on the local S3 endpoint (the first n real Myntra rows, else synthetic
    rows): (what they are, their columns, their currency)."""
    import pyarrow.parquet as pq

    if not MYNTRA.is_file():
        print(f"real: {MYNTRA} is absent (the shared data folder); the synthetic catalog instead", flush=True)
        for n in sizes:
            write_catalog(f"s3://bench/real-{n}/", n, files=1)
        return "synthetic", COLUMNS, "USD"
    t = pq.read_table(MYNTRA, columns=sorted(MYNTRA_COLUMNS.values()))
    for n in sizes:
        loc = storage.resolve(f"s3://bench/real-{n}/part-0.parquet")
        pq.write_table(t.slice(0, n), loc.path, filesystem=loc.fs)
    return f"myntra ({MYNTRA.name}, first rows)", MYNTRA_COLUMNS, "INR"


def bench_real(rows: int, max_tokens: int, repeats: int, hf_rows: int, tmp: Path,
               memory_fraction: float | None = None) -> dict:
    """The real model: pdgen against plain ``vllm.LLM.chat``, and vLLM against the transformers
    loop, each ratio measured ``repeats`` times, interleaved (each repeat runs pdgen, plain vLLM
    and transformers, the order rotated), and given as its median and spread.

    - pdgen / vLLM: marginal rates between ``rows`` and ``3 * rows`` (``marginal_rate``, as in
      section a.: engine start and every fixed cost out of both). Plain vLLM gets the messages
      pdgen renders its prompts from, pdgen's sampling parameters and per-row seeds, and pdgen's
      engine settings for this model (``engine_kwargs``: fp32, eager, uni executor, the CPU memory
      share, chunked prefill off) with pdgen's engine thread count.
    - vLLM / transformers: output tokens per second on the same ``hf_rows`` prompts (pdgen's chat
      prompts), the same sampling, one batch of up to 16 rows at a time in transformers; engine
      start and model load out of both, the same torch thread count.

    ``memory_fraction``: the engines' KV-cache share of host memory for both (default: pdgen's
    choice for this model, 0.3), for a box where other processes hold memory."""

    resolve_model(REAL_MODEL)  # dequantized once into the node cache, before any timing
    sizes = (rows, 3 * rows)
    source, columns, currency = real_catalogs(sizes + (8,))

    def sd(n: int, out: str = "/tmp/unused") -> dict:
        return spec_dict(f"s3://bench/real-{n}/", out, max_tokens, model=REAL_MODEL, columns=columns,
                         currency=currency, sampling={}, memory_fraction=memory_fraction)

    sets = [prompts_for(sd(n)) for n in sizes]
    assert sets[0]["messages"], f"{REAL_MODEL}: expected the chat format"
    hf_set = {k: v[:hf_rows] for k, v in sets[0].items()}
    threads = engine_threads(spec_from_dict(sd(rows)))
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": str(threads)}  # as generate.map_batches_kwargs
    # A small run first, so that the measured runs find Ray's workers, imports and page cache warm.
    run_pdgen(sd(8, "s3://bench/real-warm-out/"))
    reps = []
    for r in range(repeats):
        kinds = ["pdgen", "vllm", "transformers"]
        order = kinds[r % 3:] + kinds[:r % 3]
        rep: dict = {"order": order}
        for kind in order:
            if kind == "pdgen":
                pd = []
                for n in sizes:
                    rec, wall = run_pdgen(sd(n, f"s3://bench/real-out-{r}-{n}/"))
                    pd.append({"rows": rec["counts"]["accepted"] + rec["counts"]["rejected"],
                               "tokens_out": rec["tokens"]["out"], "tokens_in": rec["tokens"].get("in"),
                               "total_s": wall, "generate_s": rec["timing"]["generate_s"]})
                rep["pdgen"] = {"runs": pd, "marginal_tokens_per_s": marginal_rate(*pd, "total_s")}
            elif kind == "vllm":
                raw = run_raw_vllm(sd(rows), sets + [hf_set], tmp, env)
                small, big, same = raw["runs"]
                rep["vllm"] = {"engine_start_s": raw["engine_start_s"], "runs": [small, big],
                               "marginal_tokens_per_s": marginal_rate(small, big, "generate_s"),
                               "hf_prompts": {**same, "tokens_per_s": same["tokens_out"] / same["generate_s"]},
                               "engine_kwargs": raw["engine_kwargs"]}
            else:
                rep["transformers"] = hf_loop(hf_set["prompts"], max_tokens, batch=16, model=REAL_MODEL,
                                              sampling=hf_set["params"][0], threads=threads)
        rep["pdgen_vs_vllm"] = rep["pdgen"]["marginal_tokens_per_s"] / rep["vllm"]["marginal_tokens_per_s"]
        rep["vllm_vs_transformers"] = (rep["vllm"]["hf_prompts"]["tokens_per_s"]
                                       / rep["transformers"]["tokens_per_s"])
        rep["same_tokens_out"] = [p["tokens_out"] == v["tokens_out"]
                                  for p, v in zip(rep["pdgen"]["runs"], rep["vllm"]["runs"])]
        print(f"real repeat {r + 1}/{repeats}: pdgen/vLLM {rep['pdgen_vs_vllm']:.2f} (pdgen "
              f"{rep['pdgen']['marginal_tokens_per_s']:.0f}, vLLM {rep['vllm']['marginal_tokens_per_s']:.0f} tok/s "
              f"marginal), vLLM/transformers {rep['vllm_vs_transformers']:.2f} (vLLM "
              f"{rep['vllm']['hf_prompts']['tokens_per_s']:.0f}, transformers "
              f"{rep['transformers']['tokens_per_s']:.0f} tok/s)", flush=True)
        reps.append(rep)
    return {"model": REAL_MODEL, "catalog": source, "task": "description", "format": "chat",
            "rows": list(sizes), "max_tokens": max_tokens, "hf_rows": len(hf_set["prompts"]),
            "threads": threads, "memory_fraction": memory_fraction or "pdgen default", "sampling": {k: v for k, v in sets[0]["params"][0].items() if k != "seed"},
            "pdgen_vs_vllm": spread([x["pdgen_vs_vllm"] for x in reps]),
            "vllm_vs_transformers": spread([x["vllm_vs_transformers"] for x in reps]),
            "pdgen_marginal_tokens_per_s": spread([x["pdgen"]["marginal_tokens_per_s"] for x in reps]),
            "vllm_marginal_tokens_per_s": spread([x["vllm"]["marginal_tokens_per_s"] for x in reps]),
            "repeats": reps}


def _bump_prices(uri: str, k: int, first: int = 0) -> list[str]:
    """Raise the price of ``k`` rows of the Parquet file ``uri`` from row ``first``; their skus."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    loc = storage.resolve(uri)
    t = pq.read_table(loc.path, filesystem=loc.fs)
    idx = pa.array([first <= i < first + k for i in range(t.num_rows)])
    t = t.set_column(t.schema.get_field_index("price_usd"), "price_usd",
                     pc.if_else(idx, pc.add(t.column("price_usd"), 1.0), t.column("price_usd")))
    pq.write_table(t, loc.path, filesystem=loc.fs)
    return t.column("product_id").slice(first, k).to_pylist()


def _regenerated(rec: dict) -> int:
    return sum(v["accepted"] + v["rejected"] for v in rec["counts"]["by_task"].values())


def bench_incremental(rows: int, max_tokens: int) -> dict:
    """Refresh cost as a share of a full run on the same model and catalog, side by side:
    1% changed with the job's own engine actors (an engine start per refresh), then, with the
    generation service up (``pdgen service start``; its replica reserves no CPU on this 2-core
    Ray, as in the suite), 1% and 0.1% changed and a changes feed naming 10 skus."""
    import pyarrow.parquet as pq

    from pdgen_core import service

    files = write_catalog("s3://bench/incr/", rows, files=4)
    spec = spec_dict("s3://bench/incr/", "s3://bench/incr-out/", max_tokens, mode="incremental")
    os.environ["PDGEN_ENGINE_SERVICE"] = "off"
    full, full_s = run_pdgen(spec)
    k = max(1, rows // 100)  # 1% of all rows, all in the first file
    _bump_prices(files[0], k)
    t0 = time.monotonic()
    planned = GenerationRun(spec_from_dict(spec)).plan_only()
    plan_s = time.monotonic() - t0
    incr, incr_s = run_pdgen(spec)
    out = {"rows": rows, "changed": k, "full_s": full_s, "refresh_s": incr_s, "plan_only_s": plan_s,
           "regenerated": _regenerated(incr), "plan_to_generate": planned, "engine": incr["engine"]["kind"],
           "refresh_vs_full": incr_s / full_s, "refresh_vs_plan_only": incr_s / plan_s}
    print(f"incremental own engine: {json.dumps(out)}", flush=True)
    path = resolve_model(spec["model"]["source"])
    sp = spec_from_dict(spec)
    t0 = time.monotonic()
    service.start(sp, path, model_identity(path, sp.model.revision), num_cpus=0)
    out["service_start_s"] = time.monotonic() - t0
    os.environ["PDGEN_ENGINE_SERVICE"] = "auto"
    try:
        cases = []
        for name, n, file in (("1%", k, files[1]), ("0.1%", max(1, rows // 1000), files[2])):
            _bump_prices(file, n)
            rec, secs = run_pdgen(spec)
            cases.append({"changed": name, "rows": n, "refresh_s": secs, "regenerated": _regenerated(rec),
                          "engine": rec["engine"]["kind"], "refresh_vs_full": secs / full_s})
            print(f"incremental with the service: {json.dumps(cases[-1])}", flush=True)
        _bump_prices(files[3], 10)  # the catalog and the feed agree: the feed names the new prices
        src, feed = storage.resolve(files[3]), storage.resolve("s3://bench/incr-feed/prices.parquet")
        prices = pq.read_table(src.path, filesystem=src.fs, columns=["product_id", "price_usd"]).slice(0, 10)
        pq.write_table(prices, feed.path, filesystem=feed.fs)
        rec, secs = run_pdgen(spec, changes=feed.uri)
        cases.append({"changed": "10 rows (changes feed)", "rows": 10, "refresh_s": secs,
                      "regenerated": _regenerated(rec), "engine": rec["engine"]["kind"],
                      "refresh_vs_full": secs / full_s})
        print(f"incremental with the service: {json.dumps(cases[-1])}", flush=True)
        out["with_service"] = cases
    finally:
        os.environ["PDGEN_ENGINE_SERVICE"] = "off"
        service.stop()
    return out


def seed_content(spec, every: int = 100) -> int:
    """Commit content rows for all but one in ``every`` of the catalog's work items, with their
    real fingerprints (texts are placeholders; no engine): the state a refresh plans against.
    Streams from Ray to the Delta writer; the driver holds one batch at a time."""
    import pyarrow as pa
    from deltalake import write_deltalake

    job = GenerationRun(spec)
    keys = ["sku", "locale", "task", "variant", "input_fingerprint"]
    work = job.planned_items().select_columns(keys)
    now = pa.scalar(dt.datetime.now(dt.timezone.utc), commit.CONTENT_SCHEMA.field("generated_at").type)
    kept = 0

    def batches():
        nonlocal kept
        for b in work.iter_batches(batch_format="pyarrow", batch_size=65_536):
            b = b.filter(pa.array([i % every != 0 for i in range(b.num_rows)]))
            kept += b.num_rows
            cols = {f.name: (b.column(f.name).cast(f.type) if f.name in keys
                             else pa.nulls(b.num_rows, f.type)) for f in commit.CONTENT_SCHEMA}
            cols["text"] = pa.array(["seeded"] * b.num_rows, pa.string())
            cols["generated_at"] = pa.array([now.as_py()] * b.num_rows, now.type)
            cols["run_id"] = pa.array(["seed"] * b.num_rows, pa.string())
            yield from pa.Table.from_pydict(cols, schema=commit.CONTENT_SCHEMA).to_batches()

    loc = job.layout.content(spec.tasks[0])
    write_deltalake(loc.uri, pa.RecordBatchReader.from_batches(commit.CONTENT_SCHEMA, batches()),
                    mode="overwrite", storage_options=storage.table_options(loc))
    return kept


def bench_plan(sizes: list[int]) -> list[dict]:
    """Plan cost of a refresh: the content table holds 99% of the items with their current
    fingerprints, so the anti-join does its full work and finds the 1% to generate."""
    import tempfile

    import ray

    out = []
    for n in sizes:
        uri = f"s3://bench/plan-{n}/"
        t0 = time.monotonic()
        write_catalog(uri, n, files=max(4, n // 250_000), workers=2)
        synth_s = time.monotonic() - t0
        sd = spec_dict(uri, f"s3://bench/plan-out-{n}/", 8, mode="incremental")
        spec = spec_from_dict(sd)
        t0 = time.monotonic()
        seeded = seed_content(spec)
        seed_s = time.monotonic() - t0
        # The plan runs in a fresh driver process joined to this Ray cluster: this process has just
        # streamed the seeded table into the Delta writer, and RSS never shrinks, so its peak would
        # measure the seeding. The child reports its own peak (VmHWM), before and after the plan.
        with tempfile.TemporaryDirectory() as d, RssSampler() as rss:
            sf, of = Path(d) / "spec.json", Path(d) / "out.json"
            sf.write_text(json.dumps(sd))
            env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
            subprocess.run([sys.executable, "-m", "pdgen_core.tools.bench", "--plan-child", str(sf), str(of)],
                           check=True, env=env)
            child = json.loads(of.read_text())
        s = child["plan_s"]
        feed = bench_feed_plan(sd, uri, n)
        out.append({"rows": n, "synth_s": synth_s, "seed_s": seed_s, "content_rows": seeded, "feed_plan": feed,
                    "plan_s": s, "rows_per_s": n / s, "planned": child["planned"],
                    "driver": "fresh process",
                    "driver_peak_rss_mb": child["driver_peak_rss_mb"],
                    "driver_rss_before_plan_mb": child["driver_rss_before_plan_mb"],
                    "worker_peak_rss_mb": rss.workers / 2**20,
                    "worker_peak_private_mb": rss.workers_private / 2**20,
                    "worker_peak_private_process": rss.worker_peak_name,
                    "workers_total_private_peak_mb": rss.workers_total_private / 2**20})
        # Each size's figures as soon as they exist: a long run that is stopped keeps them.
        print(f"plan {n}: {json.dumps(out[-1])}", flush=True)
    return out


def bench_feed_plan(sd: dict, uri: str, n: int, k: int = 10) -> dict:
    """Planning a refresh from a changes feed naming ``k`` skus of the ``n``-row catalog (new
    prices), with the feed's skus pushed into the reads (the catalog's and the committed keys')
    and, side by side, the old path: everything read, narrowed after."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    step = max(1, n // k)
    skus = [f"SKU-{i * step:08d}" for i in range(k)]
    loc = storage.resolve(uri.rstrip("/") + "-feed/prices.parquet")
    pq.write_table(pa.table({"product_id": skus, "price_usd": [1234.5] * k}), loc.path, filesystem=loc.fs)
    out = {"skus": k}
    for name, pushdown in (("pushdown", True), ("old_full_read", False)):
        job = GenerationRun(spec_from_dict(sd), changes=loc.uri)
        job.feed_pushdown = pushdown
        t0 = time.monotonic()
        planned = job.plan_only()
        out[f"{name}_s"] = time.monotonic() - t0
        out[f"{name}_planned"] = planned
        print(f"feed plan {n} rows, {k} skus, {name}: {out[f'{name}_s']:.1f}s, {planned} to generate", flush=True)
    return out


def bench_plan_udf(sizes: list[int], repeats: int = 1) -> list[dict]:
    """``--plan-udf``: the plan's own step side by side, no Ray and no storage: the per-row path
    (``plan.plan_batch_rows``, ``work_items`` per row) against the batch path (``plan.plan_batch``)
    on the same synthetic clean batches (``synth.make_catalog`` in 65,536-row chunks, cleaned
    in the stage's 8,192-row batches; only the plan calls are timed), each in a fresh process per
    size, path and repeat, the two paths alternating. Each child's peak is its VmHWM."""
    out = []
    for n in sizes:
        runs: dict[str, list[dict]] = {"rows": [], "batch": []}
        for _ in range(repeats):
            for path in runs:
                p = subprocess.run([sys.executable, "-m", "pdgen_core.tools.bench", "--plan-udf-child", path, str(n)],
                                   check=True, capture_output=True, text=True)
                runs[path].append(json.loads(p.stdout.strip().splitlines()[-1]))
        best = {k: max(r["rows_per_s"] for r in v) for k, v in runs.items()}
        out.append({"rows": n, "runs": runs, "rows_per_s": best, "batch_vs_rows": best["batch"] / best["rows"],
                    "load_avg_1m": os.getloadavg()[0]})
        print(f"plan udf {n}: {json.dumps(out[-1])}", flush=True)
    return out


def plan_udf_child(path: str, n: int) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from pdgen_core.stages import plan, validate
    from pdgen_core.synth import make_catalog

    fn = {"rows": plan.plan_batch_rows, "batch": plan.plan_batch}[path]
    spec = spec_from_dict(spec_dict("s3://bench/udf/", "s3://bench/udf-out/", 8, mode="incremental"))
    ctx = build_context(spec, "bench", "pdgen-tiny@bench", frozenset())
    canon = {src: c for c, src in COLUMNS.items()}
    plan_s, items, chunk = 0.0, 0, 65_536
    for start in range(0, n, chunk):
        cat = make_catalog(min(chunk, n - start), start=start)
        cat = cat.select([c for c in cat.column_names if c in canon]).rename_columns(
            [canon[c] for c in cat.column_names if c in canon])
        for i in range(0, cat.num_rows, 8192):
            clean = validate.clean_batch(cat.slice(i, 8192))
            valid = clean.filter(pc.is_null(clean.column("reject_reason")))
            t0 = time.perf_counter()
            items += fn(valid, ctx).num_rows
            plan_s += time.perf_counter() - t0
    assert isinstance(valid, pa.Table)
    print(json.dumps({"path": path, "rows": n, "items": items, "plan_s": plan_s, "rows_per_s": n / plan_s,
                      "peak_rss_mb": _vm_hwm_mb()}))


def plan_child(spec_file: str, out_file: str) -> None:
    """``--plan-child``: one plan in a fresh driver process that joins the running cluster
    (``RAY_ADDRESS``); writes the plan time, the item count and this process's peak RSS.

    The peak is VmHWM, the high-water mark of this process's own memory map. Not getrusage's
    ru_maxrss: Linux carries that across fork and exec, so a child reports at least the RSS its
    parent had when it forked (measured: 1,177 MB "before the plan" under a 1.3 GB parent)."""

    log.configure(json=True, level="WARNING")
    init_ray()
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    spec = spec_from_dict(json.loads(Path(spec_file).read_text()))
    before = _vm_hwm_mb()
    t0 = time.monotonic()
    planned = GenerationRun(spec).plan_only()
    s = time.monotonic() - t0
    Path(out_file).write_text(json.dumps({
        "plan_s": s, "planned": planned, "driver_rss_before_plan_mb": before,
        "driver_peak_rss_mb": _vm_hwm_mb()}))


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return psutil.Process().memory_info().rss / 2**20  # no procfs: the current RSS, a lower bound


def bench_start(tmp: Path) -> dict:
    write_catalog("s3://bench/one/", 1, files=1)
    rec, wall = run_pdgen(spec_dict("s3://bench/one/", "s3://bench/one-out/", 8))
    return {"first_committed_row_s": wall, "generate_s_incl_engine_start": rec["timing"]["generate_s"]}


def table(res: dict) -> str:
    lines = [f"pdgen benchmarks {res['date']} on {res['machine']}"]
    if "pipeline" in res:
        p, h = res["pipeline"], res["transformers"]
        lines.append(f"a. pipeline vs plain vLLM, engine start out of both (marginal rate, "
                     f"{p['pdgen_runs'][0]['rows']}->{p['pdgen']['rows']} rows): pdgen "
                     f"{p['pdgen_marginal_tokens_per_s']:.0f} tok/s, vLLM {p['vllm_marginal_tokens_per_s']:.0f} tok/s, "
                     f"ratio {p['ratio_marginal']:.2f} (against vLLM {p['vllm_baseline_used']}; "
                     + ", ".join(f"{k} {v:.2f}" for k, v in p["ratio_marginal_by_baseline"].items())
                     + f"); engine start in both ({p['pdgen']['rows']} rows): "
                     f"pdgen {p['pdgen']['tokens_per_s']:.0f} tok/s ({p['pdgen']['total_s']:.0f} s), vLLM "
                     f"{p['vllm']['tokens_per_s']:.0f} tok/s ({p['vllm']['total_s']:.0f} s), ratio {p['ratio_tokens_per_s']:.2f}")
        lines.append(f"b. transformers generate, batch 16 ({h['rows']} rows): {h['tokens_per_s']:.0f} tok/s; "
                     f"pdgen/transformers {res['pipeline_vs_transformers']:.2f}, vLLM/transformers "
                     f"{p['vllm']['tokens_per_s'] / h['tokens_per_s']:.2f}")
    if "incremental" in res:
        i = res["incremental"]
        lines.append(f"c. refresh after 1% change of {i['rows']} rows: {i['refresh_s']:.1f}s vs full {i['full_s']:.1f}s "
                     f"(ratio {i['refresh_vs_full']:.3f}); plan-only {i['plan_only_s']:.1f}s "
                     f"(refresh/plan {i['refresh_vs_plan_only']:.2f}); regenerated {i['regenerated']}")
        for c in i.get("with_service", []):
            lines.append(f"   service up, {c['changed']} changed: {c['refresh_s']:.1f}s (ratio "
                         f"{c['refresh_vs_full']:.3f}); regenerated {c['regenerated']} ({c['engine']})")
    for r in res.get("plan", []):
        lines.append(f"d. plan {r['rows']:>9,} rows: {r['rows_per_s']:,.0f} rows/s, driver peak "
                     f"{r['driver_peak_rss_mb']:.0f} MB ({r.get('driver', 'same process')}), worker peak {r['worker_peak_rss_mb']:.0f} MB RSS / "
                     f"{r.get('worker_peak_private_mb', 0):.0f} MB private "
                     f"({r['planned']:,} of {r['rows']:,} to generate)")
        if "feed_plan" in r:
            f = r["feed_plan"]
            lines.append(f"   feed of {f['skus']} skus: planned in {f['pushdown_s']:.1f}s with pushdown "
                         f"({f['pushdown_planned']} to generate), {f['old_full_read_s']:.1f}s reading everything "
                         f"({f['old_full_read_planned']})")
    if "real" in res:
        r = res["real"]

        def fmt(d: dict) -> str:
            return f"{d['median']:.2f} (range {d['min']:.2f}-{d['max']:.2f} over {len(d['values'])} repeats)"
        lines.append(f"f. real model {r['model']} ({r['catalog']}, {r['task']}, {r['format']}): pdgen/vLLM.chat "
                     f"marginal {r['rows'][0]}->{r['rows'][1]} rows x {r['max_tokens']} tokens: "
                     f"{fmt(r['pdgen_vs_vllm'])}; pdgen {r['pdgen_marginal_tokens_per_s']['median']:.0f}, vLLM "
                     f"{r['vllm_marginal_tokens_per_s']['median']:.0f} tok/s (medians)")
        lines.append(f"   vLLM/transformers generate ({r['hf_rows']} rows, batch 16, {r['threads']} thread(s)): "
                     f"{fmt(r['vllm_vs_transformers'])}")
    if "start" in res:
        e = res["start"]
        start = (f"engine start (plain vLLM) {res['pipeline']['vllm']['engine_start_s']:.1f}s; "
                 if "pipeline" in res else "")
        lines.append(f"e. {start}first committed row (one-row job, cold Ray actors) {e['first_committed_row_s']:.1f}s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--hf-rows", type=int, default=256)
    ap.add_argument("--incr-rows", type=int, default=100_000)
    ap.add_argument("--plan-rows", default="1000000,5000000")
    ap.add_argument("--real-rows", type=int, default=32,
                    help="real section: rows of the smaller run (the larger has 3x)")
    ap.add_argument("--real-max-tokens", type=int, default=64)
    ap.add_argument("--real-hf-rows", type=int, default=16, help="real section: rows of the transformers loop")
    ap.add_argument("--real-repeats", type=int, default=3)
    ap.add_argument("--real-memory-fraction", type=float, default=None,
                    help="real section: both engines' KV-cache share of host memory (default: pdgen's, 0.3)")
    ap.add_argument("--results", default=str(RESULTS), help="Folder for <date>.json")
    ap.add_argument("--only", default=",".join(sorted(ALL_SECTIONS)),
                    help="Comma-separated sections to run (a check of one part; make bench runs all)")
    ap.add_argument("--raw-vllm", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--plan-child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--plan-udf", metavar="SIZES",
                    help="only the plan step, per-row against batch path side by side (no Ray, no S3), e.g. 200000,1000000")
    ap.add_argument("--plan-udf-repeats", type=int, default=1)
    ap.add_argument("--plan-udf-child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.raw_vllm:
        return raw_vllm(*a.raw_vllm)
    if a.plan_child:
        return plan_child(*a.plan_child)
    if a.plan_udf_child:
        return plan_udf_child(a.plan_udf_child[0], int(a.plan_udf_child[1]))
    if a.plan_udf:
        bench_plan_udf([int(x) for x in a.plan_udf.split(",") if x], a.plan_udf_repeats)
        return None
    only = {x.strip() for x in a.only.split(",") if x.strip()}
    if not only or only - ALL_SECTIONS:
        ap.error(f"--only: unknown section(s) {sorted(only - ALL_SECTIONS)}; choose from {sorted(ALL_SECTIONS)}")
    import tempfile

    log.configure(json=True, level="WARNING")
    with local_s3(buckets=("bench",)), tempfile.TemporaryDirectory() as tmp:
        init_ray()
        import ray

        ray.data.DataContext.get_current().enable_progress_bars = False
        res = {"date": dt.date.today().isoformat(),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU (vLLM CPU build)"}
        if "pipeline" in only:
            res["pipeline"] = bench_pipeline(a.rows, a.max_tokens, Path(tmp))
            prompts = res["pipeline"].pop("_prompts")[: a.hf_rows]
            res["transformers"] = hf_loop(prompts, a.max_tokens)
            res["pipeline_vs_vllm"] = res["pipeline"]["ratio_marginal"]
            res["pipeline_vs_vllm_with_engine_start"] = res["pipeline"]["ratio_tokens_per_s"]
            res["pipeline_vs_transformers"] = (res["pipeline"]["pdgen"]["tokens_per_s"]
                                               / res["transformers"]["tokens_per_s"])
        if "incremental" in only:
            res["incremental"] = bench_incremental(a.incr_rows, 8)
        if "plan" in only:
            res["plan"] = bench_plan([int(x) for x in a.plan_rows.split(",") if x])
        if "start" in only:
            res["start"] = bench_start(Path(tmp))
        if "real" in only:
            if a.real_repeats < 3:
                print(f"real: {a.real_repeats} repeat(s): a check that it runs, not a figure (the claim "
                      "is the median of at least 3)", flush=True)
            res["real"] = bench_real(a.real_rows, a.real_max_tokens, a.real_repeats, a.real_hf_rows, Path(tmp),
                                     a.real_memory_fraction)
            res["real_pdgen_vs_vllm"] = res["real"]["pdgen_vs_vllm"]["median"]
            res["real_vllm_vs_transformers"] = res["real"]["vllm_vs_transformers"]["median"]
    results = Path(a.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{res['date']}.json"
    if only != ALL_SECTIONS and path.exists():  # a partial run updates its sections of the day's file
        res = {**json.loads(path.read_text()), **res}
    res.setdefault("runs", []).append({"sections": sorted(only), "argv": sys.argv[1:],
                                       "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                       "load_avg_1m_at_end": os.getloadavg()[0]})
    path.write_text(json.dumps(res, indent=2))
    print(table(res))
    print(f"figures: {path}")


if __name__ == "__main__":
    main()
