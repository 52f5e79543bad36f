"""``pdgen eval SPEC``: on the spec's held-out test split, the fine-tuned model against the untuned
starting model and a fixed template baseline, on ROUGE-L, chrF, BLEU and guardrail pass rate.

The test split is the one ``pdgen finetune`` set aside with the same hash (neither trained on nor
used for early stopping). LoRA adapters are generated with vLLM (one engine, the adapter through a
``LoRARequest``, the untuned model as the same engine without it); from-scratch models, whose
"untuned" form is the random initialisation, with HF ``generate``. Decoding is greedy for both,
with the same optional repetition penalty (both engines) and n-gram repeat ban (HF only) for every
model, so no system gets settings the other lacks. ``split="val"`` scores the validation split
instead, to choose such settings without looking at the test split. ``guard_retry`` adds the
pipeline's guard retry round (rejected texts generated again with ``sampling.retry``'s repetition
penalty) to every generated system, and keeps the first attempt's pass rate beside it.

A chat-format adapter trained without the task's worked examples (``model.few_shot: false``) is
scored on that prompt; "untuned" is the base model on the same prompt (zero-shot chat) and
"untuned (few-shot)" the base model on the prompt generation sends it without an adapter (the
examples included). Texts are judged as the guard stage judges them: a text vLLM cut at
``max_new_tokens`` is trimmed to its whole sentences or refused as ``truncated``, and
``grounding_fail`` is the share of otherwise-accepted texts a grounding check refuses.
vLLM starts its workers with spawn: call this from under an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from pdgen_core.finetune import data as D
from pdgen_core.finetune import registry
from pdgen_core.finetune.config import DataSpec, FinetuneSpec, ModelSpec
from pdgen_core.finetune.loop import generate
from pdgen_core.finetune.metrics import guard_reasons, text_metrics
from pdgen_core.finetune.train import pairs_for, prompt_format
from pdgen_core.log import get_logger
from pdgen_core.models.chat import chat_template
from pdgen_core.models.resolve import resolve_model
from pdgen_core.tasks import TASKS

SYSTEMS = ("fine-tuned", "untuned", "template")
SPLITS = ("test", "val")
VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def template_baseline(row: dict[str, Any]) -> str:
    """The fixed template: the title's product words, brand, audience and colour in one sentence."""
    title, brand = row.get("title") or "", row.get("brand") or ""
    rest = title[len(brand):].strip() if brand and title.lower().startswith(brand.lower()) else title
    gender = row.get("gender") or ""
    if gender:
        rest = re.sub(rf"\b{re.escape(gender)}\b", "", rest, flags=re.I).strip()
    rest = " ".join(rest.split()) or "product"
    text = f"{rest[0].upper()}{rest[1:]}" + (f" by {brand}" if brand else "")
    if gender:
        text += f" for {gender.lower()}"
    color = row.get("color") or ""
    if color and color.lower() not in rest.lower():
        text += f", in {color.lower()}"
    return text + "."


def held_out(spec: FinetuneSpec, tok, limit: int | None, split: str = "test",
             base_path: Path | None = None) -> tuple[list[D.Pair], list[dict]]:
    """The test split (the validation split if the spec sets no test share, or ``split="val"``),
    as pairs and rows: built as ``pdgen finetune`` built them (prompts in the spec's format on
    ``base_path``, references repaired as the spec says; the test split is never filtered)."""

    if split not in SPLITS:
        raise ValueError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    d = spec.data
    rows = D.load_rows(d.uri, d.columns, d.limit)
    by_sku = {str(r.get("sku") or i): r for i, r in enumerate(rows)}
    pairs, _ = pairs_for(spec, rows, base_path)
    splits = D.split_pairs(pairs, d.val_fraction, d.test_fraction, d.split_salt)
    test = (splits["test"] if split == "test" else []) or splits["val"]
    test = [p for p in test if D.encode_pair(tok, p.prompt, p.target, spec.model.max_seq_len)]
    test = test[:limit] if limit else test
    return test, [by_sku.get(p.sku, {"title": p.title}) for p in test]


def decoding_settings(max_new_tokens: int, repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
                      engine: str = "vllm") -> dict[str, Any]:
    """The decoding every generated system gets, checked; recorded in the report."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens {max_new_tokens}: must be at least 1")
    if not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty {repetition_penalty}: must be > 0 (1.0 = off)")
    if no_repeat_ngram_size < 0:
        raise ValueError(f"no_repeat_ngram_size {no_repeat_ngram_size}: must be >= 0 (0 = off)")
    if no_repeat_ngram_size and engine == "vllm":
        raise ValueError("no_repeat_ngram_size: vLLM has no n-gram repeat ban; use --engine hf, or "
                         "--repetition-penalty alone")
    return {"greedy": True, "max_new_tokens": max_new_tokens, "repetition_penalty": repetition_penalty,
            "no_repeat_ngram_size": no_repeat_ngram_size}


def _vllm_generate(base: Path, adapter: Path | None, rank: int, jobs: dict[str, tuple[list[str], bool]],
                   max_tokens: int, max_model_len: int, stops: tuple[str, ...] = (),
                   repetition_penalty: float = 1.0) -> dict[str, tuple[list[str], list[str]]]:
    """Each job's prompts on one engine: ``(prompts, through_adapter)`` -> ``(texts, finish
    reasons)``; the adapter's jobs through its LoRA request (no engine starts when none has prompts)."""
    out: dict[str, tuple[list[str], list[str]]] = {name: ([], []) for name in jobs}
    if not any(p for p, _ in jobs.values()):
        return out
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(model=str(base), enable_lora=adapter is not None, max_loras=1,
              max_lora_rank=next(r for r in VLLM_RANKS if r >= rank), gpu_memory_utilization=0.25,
              enforce_eager=True, dtype="float32", max_model_len=max_model_len, seed=0,
              **_in_process_on_cpu())
    sp = SamplingParams(temperature=0.0, max_tokens=max_tokens, stop=list(stops) or None,
                        repetition_penalty=repetition_penalty)
    req = LoRARequest("finetuned", 1, str(adapter)) if adapter is not None else None
    for name, (prompts, lora) in jobs.items():
        if prompts:
            res = llm.generate(prompts, sp, lora_request=req if lora else None, use_tqdm=False)
            out[name] = ([o.outputs[0].text.strip() for o in res],
                         ["length" if o.outputs[0].finish_reason == "length" else "stop" for o in res])
    close_llm(llm)
    return out


def _in_process_on_cpu() -> dict[str, Any]:
    """On a CPU, the engine core and its worker in this process, as the generate stage runs them
    (``stages.generate.engine_kwargs``): vLLM's default is two more processes, the engine core
    spinning a core on a shared-memory queue ("No available shared memory broadcast block" every
    minute of a 100-row eval here, 2026-12-01) while the worker computes."""
    import torch

    if torch.cuda.is_available():
        return {}
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    return {"distributed_executor_backend": "uni"}


def close_llm(llm) -> None:
    """Stop the engine's worker processes now, not in an atexit hook after logging is torn down."""
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception:  # noqa: BLE001 - best effort; vLLM's own finalizer runs anyway
        pass


def _hf_generate(model_dir: Path, prompts: list[str], max_tokens: int, adapter: Path | None = None,
                 stops: tuple[str, ...] = (), **decode: Any) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).eval()
    return generate(model, tok, prompts, max_tokens, stops=stops, **decode)


def _model_folder(source: str) -> Path:
    """``pdgen-tiny`` is the trained tiny model (as for ``model.source``); else resolve_model's."""
    if source == "pdgen-tiny":
        from pdgen_core.finetune.scratch import ensure_trained_tiny

        return ensure_trained_tiny()

    return resolve_model(source)


def _random_init_like(model_dir: Path, work: Path) -> Path:
    """The from-scratch starting point: the same config and tokenizer, freshly initialised weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    model.save_pretrained(work, safe_serialization=True)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(work)
    return work


def catalog_brands(spec: FinetuneSpec) -> frozenset[str]:
    """Every brand in the catalog: the guardrails' "no other brand named" list, as ``pdgen run``'s."""
    d = spec.data
    return frozenset(r["brand"] for r in D.load_rows(d.uri, d.columns, d.limit) if r.get("brand"))


def _prompts_for_model(spec: FinetuneSpec, folder: Path, rows: list[dict]) -> tuple[list[str], str]:
    """An extra model's prompts as generation would send them: its chat template with the task's
    examples when it has one, else the completion template."""

    if chat_template(folder):
        return [D.chat_prompt(str(folder), spec.task, r, spec.locale, spec.data.currency, True) for r in rows], "chat"
    return [TASKS[spec.task].render(r, spec.locale, spec.data.currency) for r in rows], "completion"


def format_table(report: dict[str, Any]) -> str:
    cols = ("rougeL", "chrf", "bleu", "guard_pass", "grounding_fail")
    if report.get("decoding", {}).get("guard_retry"):
        cols += ("guard_pass_first",)
    lines = [f"| system | {' | '.join(cols)} |", "|---|" + "---:|" * len(cols)]
    for name, m in report["systems"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.1f}" for c in cols) + " |")
    return "\n".join(lines)


def evaluate_spec(spec: FinetuneSpec, adapter: str = "latest", limit: int | None = 200,
                  max_new_tokens: int = 128, engine: str = "vllm", repetition_penalty: float = 1.0,
                  no_repeat_ngram_size: int = 0, split: str = "test",
                  also_models: tuple[str, ...] | list[str] = (),
                  guard_retry: float | None = None) -> dict[str, Any]:
    """Generate for the held-out rows with each system and score them; returns the report dict.
    ``also_models`` (pdgen-tiny, a folder, s3://) adds a row per model, untuned, decoded the same
    way with HF: the model generation would use without this fine-tune, beside a from-scratch one.
    ``guard_retry`` (a repetition penalty) scores what ``pdgen run`` commits with
    ``guardrails.max_attempts: 2``: every generated system's texts that the guardrails reject are
    generated once more with that penalty (``sampling.retry``'s), and ``guard_pass_first`` keeps
    the first attempt's pass rate."""
    from transformers import AutoTokenizer

    if split not in SPLITS:
        raise ValueError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    if engine not in ("vllm", "hf"):
        raise ValueError(f"engine {engine!r}: choose vllm or hf")

    log = get_logger(component="finetune.eval", run=spec.name, task=spec.task)
    path, version = registry.resolve_adapter(spec.output.uri, spec.task, adapter)
    card = registry.read_card(path)
    # The split is held out only under the data settings the adapter was trained with, and the base
    # model is the one it was trained on: take both from the card when it records them.
    update = {}
    for key, cls, recorded in (("data", DataSpec, card.get("data", {}).get("spec")),
                               ("model", ModelSpec, card.get("hyperparameters", {}).get("model"))):
        if recorded and recorded != getattr(spec, key).model_dump(mode="json"):
            log.warning("section_from_card", section=key, fix=f"the spec's `{key}` differs from the adapter "
                        "card's; evaluating with the card's")
            update[key] = cls.model_validate(recorded)
    spec = spec.model_copy(update=update) if update else spec
    decoding = decoding_settings(max_new_tokens, repetition_penalty, no_repeat_ngram_size,
                                 "hf" if card["kind"] == "full" else engine)
    if guard_retry is not None:
        if not guard_retry > 0:
            raise ValueError(f"guard_retry {guard_retry}: a repetition penalty, must be > 0 (1.0 = off)")
        decoding["guard_retry"] = {"repetition_penalty": guard_retry}
    with tempfile.TemporaryDirectory(prefix="pdgen-eval-") as work:
        if card["kind"] == "full":
            start = _random_init_like(path, Path(work))
            tok = AutoTokenizer.from_pretrained(path)
        else:
            from pdgen_core.finetune.run import base_model_path

            from pdgen_core.models.resolve import model_identity

            start = base_model_path(spec)
            tok = AutoTokenizer.from_pretrained(start)
            if card.get("base_model") and card["base_model"]["identity"] != model_identity(start):
                log.warning("base_model_changed", trained_on=card["base_model"]["identity"],
                            now=model_identity(start), fix="retrain the adapter on the current base model")
        base_for_prompts = None if card["kind"] == "full" else start
        test, rows = held_out(spec, tok, limit, split, base_for_prompts)
        if not test:
            raise ValueError(f"data.uri {spec.data.uri!r}: the held-out split is empty; raise data.test_fraction")

        fmt = prompt_format(spec, base_for_prompts)
        brands = catalog_brands(spec)
        stops = tuple(getattr(TASKS[spec.task], "stop", ()))  # the generate stage's stop strings
        # Each generated system: (model folder, LoRA adapter or None) and its prompts. LoRA systems
        # run on one vLLM engine with --engine vllm; everything else through HF generate.
        models: dict[str, tuple[Path, Path | None]] = {
            "fine-tuned": (path, None) if card["kind"] == "full" else (start, path), "untuned": (start, None)}
        prompts: dict[str, list[str]] = {name: [p.prompt for p in test] for name in models}
        formats = {name: fmt for name in models}
        if fmt == "chat" and not spec.model.few_shot:
            # The base model as generation prompts it without an adapter: with the task's examples.
            models["untuned (few-shot)"] = (start, None)
            prompts["untuned (few-shot)"] = [D.chat_prompt(str(start), spec.task, r, spec.locale,
                                                           spec.data.currency, True) for r in rows]
            formats["untuned (few-shot)"] = "chat"
        for source in also_models:
            name = f"{source} (untuned)"
            models[name] = (_model_folder(source), None)
            prompts[name], formats[name] = _prompts_for_model(spec, models[name][0], rows)
        on_vllm = card["kind"] != "full" and engine == "vllm"
        on_base = {n for n, (folder, _) in models.items() if folder == start} if on_vllm else set()

        def generate_all(todo: dict[str, list[str]], penalty: float) -> dict[str, tuple[list[str], list[str]]]:
            out: dict[str, tuple[list[str], list[str]]] = {}
            if on_vllm:
                from transformers import AutoConfig

                # the longest prompt of any system (the few-shot one is longer than the trained ones)
                longest = max([spec.model.max_seq_len] + [len(tok(p)["input_ids"]) for n in on_base for p in todo[n]])
                max_len = min(AutoConfig.from_pretrained(start).max_position_embeddings, longest + max_new_tokens)
                out = _vllm_generate(start, path, card["hyperparameters"]["lora"]["rank"],
                                     {n: (todo[n], models[n][1] is not None) for n in on_base},
                                     max_new_tokens, max_len, stops, penalty)
            for name, (folder, lora) in models.items():
                if name not in out:  # HF generate: no finish reason (texts count as stopped)
                    texts = _hf_generate(folder, todo[name], max_new_tokens, adapter=lora, stops=stops,
                                         repetition_penalty=penalty,
                                         no_repeat_ngram_size=no_repeat_ngram_size) if todo[name] else []
                    out[name] = (texts, ["stop"] * len(texts))
            return out

        def judge(name: str, finish: list[str]) -> dict[str, Any]:
            """How the guard stage would judge this system's texts (``text_metrics``' ``guard``)."""
            return {"finish": finish, "prompt_format": formats.get(name, "completion"), "known_brands": brands}

        done = generate_all(prompts, repetition_penalty)
        gens = {n: t for n, (t, _) in done.items()}
        finishes = {n: f for n, (_, f) in done.items()}
        first: dict[str, dict[str, Any]] = {}
        if guard_retry is not None:
            # As the pipeline's retry round: only the rejected texts are generated again.
            failed = {name: [i for i, r in enumerate(guard_reasons(gens[name], spec.task, rows, spec.data.currency,
                                                                   **judge(name, finishes[name]))) if r]
                      for name in models}
            again = generate_all({name: [prompts[name][i] for i in idx] for name, idx in failed.items()}, guard_retry)
            for name, idx in failed.items():
                first[name] = {"guard_pass_first": 100.0 * (len(test) - len(idx)) / len(test), "retried": len(idx)}
                for j, i in enumerate(idx):
                    gens[name][i], finishes[name][i] = again[name][0][j], again[name][1][j]
    gens["template"] = [template_baseline(r) for r in rows]
    finishes["template"] = ["stop"] * len(rows)
    refs = [p.target for p in test]
    names = [n for n in SYSTEMS if n != "template"] + [n for n in gens if n not in SYSTEMS] + ["template"]
    formats["template"] = "completion"
    systems = {name: text_metrics(gens[name], refs, spec.task, rows, spec.data.currency,
                                  **judge(name, finishes[name])) for name in names}
    verdicts = {name: guard_reasons(gens[name], spec.task, rows, spec.data.currency, **judge(name, finishes[name]))
                for name in names}
    for name in names:
        systems[name]["truncated"] = 100.0 * finishes[name].count("length") / max(1, len(finishes[name]))
    if guard_retry is not None:  # the template is not generated: its first attempt is its only one
        for name, m in systems.items():
            m.update(first.get(name, {"guard_pass_first": m["guard_pass"], "retried": 0}))
    report = {
        "task": spec.task, "data": spec.data.uri, "split": split if split == "val" or spec.data.test_fraction else "val",
        "n": len(test), "decoding": decoding,
        "adapter": {"version": version, "path": str(path), "kind": card["kind"], "run_id": card.get("run_id"),
                    "prompt": card.get("prompt"), "base_model": card.get("base_model")},
        "engine": "hf" if card["kind"] == "full" else engine, "systems": systems,
        "samples": [{"sku": p.sku, "reference": p.target, **{s: gens[s][i] for s in names}}
                    for i, p in enumerate(test[:5])],
        # every text with its guard verdict, for a person to read (``--json``)
        "outputs": [{"sku": p.sku, "title": rows[i].get("title"), "reference": p.target,
                     **{s: {"text": gens[s][i], "reason": verdicts[s][i]} for s in names}}
                    for i, p in enumerate(test)],
    }
    report["table"] = format_table(report)
    log.info("eval_done", n=len(test), version=version,
             **{f"{s}_rougeL": round(m["rougeL"], 1) for s, m in systems.items()})
    return report
