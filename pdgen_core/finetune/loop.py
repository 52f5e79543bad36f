"""The training loop each Ray Train worker runs (``train_loop_per_worker``).

One loop for both kinds: a LoRA adapter on a base model (PEFT) or a tiny Llama from scratch.
Data-parallel over Ray Train workers (DDP over gloo on CPUs, NCCL on GPUs); AdamW with weight decay
off norms and biases; warmup then cosine/linear decay; gradient clipping; bf16 autocast on CUDA.

Every evaluation (each epoch end, and every ``eval_every_steps``) reports its metrics with a
checkpoint through ``ray.train.report``; the checkpoint holds the weights, the optimizer state
and the loop state (step, time used, position in the epoch, early-stopping counters). A run started
again under the same name gets the latest checkpoint from ``ray.train.get_checkpoint()`` and goes on
from there; a finished run returns at once.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pdgen_core.finetune import metrics as M
from pdgen_core.finetune.config import FinetuneSpec
from pdgen_core.finetune.data import Pair, collate, encode_pairs
from pdgen_core.log import get_logger
from pdgen_core.models.resolve import resolve_model

PROGRESS_EVERY_S = 30.0
STATE_FILE = "pdgen_state.json"
OPTIM_FILE = "trainer_state.pt"


@dataclass
class LoopState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: float | None = None
    bad_evals: int = 0
    done: bool = False
    stop_reason: str = ""
    train_seconds: float = 0.0
    resumed_at: list[int] = field(default_factory=list)   # steps at which a new fit() picked the run up
    history: list[dict] = field(default_factory=list)


def worker_base_path(spec: FinetuneSpec, base_path: str | None) -> Path:
    """The base model folder on this worker's node: the driver's ``base_path`` when this node has
    it, else ``model.source`` resolved into this node's cache (once per node, under its lock).
    ``pdgen-tiny`` is trained by the driver only: a worker never trains a model by accident."""
    if base_path and (Path(base_path) / "config.json").is_file():
        return Path(base_path)
    if spec.model.source == "pdgen-tiny":
        from pdgen_core.models.resolve import ModelError

        raise ModelError(f"pdgen-tiny was trained on the driver's node ({base_path}); this worker's node "
                         "lacks it: upload the folder to s3:// and name that prefix as model.source")

    return resolve_model(spec.model.source)


def load_tokenizer(spec: FinetuneSpec, tokenizer_json: str | None, base_path: Path | None = None):
    """The tokenizer: from the base model folder, or the from-scratch one built by the driver."""
    if spec.model.from_scratch:
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_str(tokenizer_json), bos_token="<|bos|>", eos_token="<|eos|>",
            pad_token="<|pad|>", unk_token="<|unk|>", model_max_length=max(512, spec.model.max_seq_len),
        )
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def build_model(spec: FinetuneSpec, tok, ckpt_dir: Path | None, base_path: Path | None = None):
    """The trainable model, fresh or from a checkpoint folder."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    if spec.model.from_scratch:
        if ckpt_dir is not None:
            return LlamaForCausalLM.from_pretrained(ckpt_dir, dtype=torch.float32)
        from pdgen_core.models.tiny import llama_config

        t = spec.model.tiny
        cfg = llama_config(len(tok), hidden=t.hidden, layers=t.layers, heads=t.hidden // 64,
                           max_positions=max(512, spec.model.max_seq_len), tokenizer=tok)
        return LlamaForCausalLM(cfg)
    from peft import LoraConfig, PeftModel, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    if ckpt_dir is not None:
        return PeftModel.from_pretrained(base, ckpt_dir, is_trainable=True)
    lo = spec.lora
    return get_peft_model(base, LoraConfig(
        r=lo.rank, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=list(lo.target_modules),
        task_type="CAUSAL_LM", bias="none",
    ))


def lr_factor(spec: FinetuneSpec, step: int, total: int, elapsed: float) -> float:
    """Linear warmup, then cosine/linear decay to ``min_lr_ratio`` (or constant). Progress is the
    larger of steps done and, with ``max_seconds``, time used, so a time-boxed run still anneals."""
    o = spec.optim
    if step < o.warmup_steps:
        return (step + 1) / (o.warmup_steps + 1)
    if o.schedule == "constant":
        return 1.0
    frac = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
    if spec.train.max_seconds:
        frac = max(frac, elapsed / spec.train.max_seconds)
    frac = min(1.0, frac)
    decay = 0.5 * (1 + math.cos(math.pi * frac)) if o.schedule == "cosine" else 1.0 - frac
    return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * decay


def make_optimizer(model, spec: FinetuneSpec):
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.optim.lr, betas=tuple(spec.optim.betas),
    )


def cut_at_stop(text: str, stops: tuple[str, ...] | list[str]) -> str:
    """The text before the first stop string (what vLLM's ``stop`` does), stripped."""
    for s in stops:
        if s and s in text:
            text = text[: text.index(s)]
    return text.strip()


def generate(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int = 16,
             stops: tuple[str, ...] = (), repetition_penalty: float = 1.0,
             no_repeat_ngram_size: int = 0) -> list[str]:
    """Greedy completions with HF ``generate`` (left-padded batches), cut at ``stops``; optionally
    with a repetition penalty (as vLLM's) and a ban on repeating any n-gram of the given size."""
    import torch

    out: list[str] = []
    device = next(model.parameters()).device
    for i in range(0, len(prompts), batch_size):
        enc = [tok(p)["input_ids"] for p in prompts[i : i + batch_size]]
        n = max(len(e) for e in enc)
        ids = torch.tensor([[tok.pad_token_id] * (n - len(e)) + e for e in enc], device=device)
        mask = torch.tensor([[0] * (n - len(e)) + [1] * len(e) for e in enc], device=device)
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                 repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size)
        out += [cut_at_stop(t, stops) for t in tok.batch_decode(gen[:, n:], skip_special_tokens=True)]
    return out


def answer_loss(model, batch: dict[str, Any]):
    """Summed cross-entropy over the answer tokens and their count. The output layer runs only
    from the earliest answer position of the batch on (``logits_to_keep``): with SmolLM2's
    49,152-word vocabulary it is the costliest matrix per token, and prompt positions carry no loss."""
    import torch

    labels = batch["labels"]
    answer = labels != -100
    width = labels.size(1)
    first = int(answer.float().argmax(dim=1).min().item()) if answer.any() else width - 1
    keep = width - max(0, first - 1)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=keep).logits.float()
    target = labels[:, width - keep + 1:]
    total = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), target.reshape(-1),
                                              ignore_index=-100, reduction="sum")
    return total, (target != -100).sum()


def _autocast(device):
    import contextlib

    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate(model, tok, val_enc, val_pairs: list[Pair], spec: FinetuneSpec, rank: int, world: int, device):
    """Validation loss/perplexity over all workers, and text metrics of rank 0's greedy samples."""
    import torch
    import torch.distributed as dist

    model.eval()
    sums = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        shard = val_enc[rank::world]
        for i in range(0, len(shard), spec.train.batch_size):
            b = {k: v.to(device) for k, v in collate(shard[i : i + spec.train.batch_size], tok.pad_token_id).items()}
            with _autocast(device):
                lp, n = answer_loss(model, b)
            sums += torch.tensor([lp.item(), n.item()], dtype=torch.float64)
    if world > 1 and dist.is_initialized():
        dist.all_reduce(sums)
    val_loss = (sums[0] / sums[1].clamp(min=1)).item()
    out: dict[str, Any] = {"val_loss": val_loss, "perplexity": M.perplexity(val_loss)}
    if rank == 0 and spec.train.eval_samples:
        sample = val_pairs[: spec.train.eval_samples]
        core = model.module if hasattr(model, "module") else model
        from pdgen_core.tasks import TASKS

        hyps = generate(core, tok, [p.prompt for p in sample], spec.train.max_new_tokens,
                        stops=tuple(getattr(TASKS[spec.task], "stop", ())))
        rows = [{"title": p.title, "brand": p.brand, "price": p.price} for p in sample]
        tm = M.text_metrics(hyps, [p.target for p in sample], spec.task, rows, spec.data.currency)
        out.update({k: v for k, v in tm.items() if k not in ("n", "guard_fail_reasons")})
        out["samples"] = [{"sku": p.sku, "text": h} for p, h in zip(sample[:3], hyps[:3])]
    model.train()
    return out


def _save(ckpt_dir: Path, model, tok, opt, state: LoopState, spec: FinetuneSpec) -> None:
    import torch

    core = model.module if hasattr(model, "module") else model
    if spec.model.from_scratch:
        core.save_pretrained(ckpt_dir, safe_serialization=True)
        tok.save_pretrained(ckpt_dir)
    else:  # the adapter only: LoRA on embed_tokens/lm_head must not copy the frozen base matrices
        core.save_pretrained(ckpt_dir, safe_serialization=True, save_embedding_layers=False)
    torch.save({"optimizer": opt.state_dict()}, ckpt_dir / OPTIM_FILE)
    (ckpt_dir / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry: ``config`` holds the spec (as JSON), the pairs and the tokenizer."""
    import ray.train
    import ray.train.collective
    import ray.train.torch
    import torch
    import torch.distributed as dist

    spec = FinetuneSpec.model_validate(config["spec"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(spec.seed)
    torch.set_num_threads(max(1, int(spec.resources.cpus_per_worker)))
    base_path = None if spec.model.from_scratch else worker_base_path(spec, config.get("base_path"))
    tok = load_tokenizer(spec, config.get("tokenizer_json"), base_path)
    train_pairs = [Pair(**p) for p in config["train"]]
    val_pairs = [Pair(**p) for p in config["val"]]
    train_enc, _ = encode_pairs(tok, train_pairs, spec.model.max_seq_len)
    val_enc, _ = encode_pairs(tok, val_pairs, spec.model.max_seq_len)
    val_enc = val_enc[: spec.train.eval_pairs]
    if not val_enc:
        raise ValueError(f"every validation pair is longer than model.max_seq_len={spec.model.max_seq_len} "
                         "tokens; raise it or lower data.max_chars")

    state, ckpt = LoopState(), ray.train.get_checkpoint()
    ckpt_ctx = ckpt.as_directory() if ckpt else None
    ckpt_dir = Path(ckpt_ctx.__enter__()) if ckpt_ctx else None
    try:
        if ckpt_dir is not None:
            state = LoopState(**json.loads((ckpt_dir / STATE_FILE).read_text()))
        model = build_model(spec, tok, ckpt_dir, base_path)
        device = ray.train.torch.get_device()
        model = ray.train.torch.prepare_model(model)  # moves to the device; DDP when world > 1
        opt = make_optimizer(model, spec)
        per_rank = len(train_enc) // world
        if per_rank == 0:
            raise ValueError(f"{len(train_enc)} training pairs for {world} workers; add data or workers")
        steps_per_epoch = math.ceil(per_rank / spec.train.batch_size)
        total = min(spec.train.max_steps or 10**12, spec.train.epochs * steps_per_epoch)
        if ckpt_dir is not None:
            opt.load_state_dict(torch.load(ckpt_dir / OPTIM_FILE, weights_only=False)["optimizer"])
    finally:
        if ckpt_ctx:
            ckpt_ctx.__exit__(None, None, None)
    if state.done and state.stop_reason in ("max_steps", "epochs", "max_seconds"):
        # A run stopped by a limit that the spec now raises goes on (early stopping is final).
        more_time = spec.train.max_seconds is None or state.train_seconds < spec.train.max_seconds
        if state.step < total and more_time:
            state.done, state.stop_reason = False, ""
    if state.done:
        return {"resumed_finished_run": True, "step": state.step}
    if ckpt is not None:
        state.resumed_at.append(state.step)

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    log = get_logger(component="finetune.loop", run=spec.name, rank=rank)
    last_log = state.train_seconds
    t0, run_loss, run_n = time.monotonic() - state.train_seconds, 0.0, 0
    mode, es = spec.train.early_stopping.mode, spec.train.early_stopping

    def report(reason: str = "") -> None:
        nonlocal run_loss, run_n
        state.train_seconds = time.monotonic() - t0
        m = evaluate(model, tok, val_enc, val_pairs, spec, rank, world, device)
        if world > 1:
            m = ray.train.collective.broadcast_from_rank_zero(m)
        value = m[es.metric]
        if M.improved(value, state.best, mode, es.min_delta):
            state.best, state.bad_evals = value, 0
        else:
            state.bad_evals += 1
        if state.bad_evals >= es.patience:
            reason = reason or f"early_stopping: {es.metric} did not improve for {es.patience} evaluations"
        state.done = bool(reason)
        state.stop_reason = reason
        samples = m.pop("samples", [])
        m.update(step=state.step, epoch=state.epoch, train_loss=run_loss / max(1, run_n),
                 lr=opt.param_groups[0]["lr"], train_seconds=round(state.train_seconds, 2), done=state.done)
        state.history.append(m)
        run_loss, run_n = 0.0, 0
        if rank == 0:
            log.info("evaluated", **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()},
                     stop_reason=reason)
            d = Path(tempfile.mkdtemp(prefix="pdgen-ckpt-", dir=config.get("ckpt_root")))
            _save(d, model, tok, opt, state, spec)
            (d / "samples.json").write_text(json.dumps(samples, indent=1))
            ray.train.report({**m, "stop_reason": reason}, checkpoint=ray.train.Checkpoint.from_directory(d))
            if not config.get("local_mode"):  # Ray has persisted it; local mode keeps the folder
                shutil.rmtree(d, ignore_errors=True)
        else:
            ray.train.report({**m, "stop_reason": reason})

    def clock() -> float:
        """Seconds trained so far by rank 0's clock, so every worker sets the same lr and stops at
        the same step (different lrs would let DDP replicas drift apart)."""
        t = torch.tensor([time.monotonic() - t0], dtype=torch.float64)
        if spec.train.max_seconds is not None and world > 1 and dist.is_initialized():
            dist.broadcast(t, 0)
        return float(t.item())

    while not state.done:
        g = torch.Generator().manual_seed(spec.seed * 100003 + state.epoch)
        order = torch.randperm(len(train_enc), generator=g).tolist()[rank::world][:per_rank]
        for b in range(state.batch_in_epoch, steps_per_epoch):
            batch = [train_enc[i] for i in order[b * spec.train.batch_size : (b + 1) * spec.train.batch_size]]
            x = {k: v.to(device) for k, v in collate(batch, tok.pad_token_id).items()}
            elapsed = clock()
            for grp in opt.param_groups:
                grp["lr"] = spec.optim.lr * lr_factor(spec, state.step, total, elapsed)
            with _autocast(device):
                loss_sum, n_tokens = answer_loss(model, x)
                loss = loss_sum / n_tokens.clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, spec.optim.grad_clip)
            opt.step()
            state.step, state.batch_in_epoch = state.step + 1, b + 1
            run_loss, run_n = run_loss + loss.item(), run_n + 1
            if rank == 0 and elapsed - last_log >= PROGRESS_EVERY_S:
                last_log = elapsed
                log.info("train_progress", step=state.step, total=total, epoch=state.epoch,
                         loss=round(run_loss / run_n, 4), lr=opt.param_groups[0]["lr"], seconds=round(elapsed, 1))
            if state.step >= total:
                report("max_steps" if spec.train.max_steps and state.step >= spec.train.max_steps else "epochs")
                break
            if spec.train.max_seconds is not None and elapsed > spec.train.max_seconds:
                report("max_seconds")
                break
            if spec.train.eval_every_steps and state.step % spec.train.eval_every_steps == 0 and b + 1 < steps_per_epoch:
                report()
                if state.done:
                    break
        else:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            report("epochs" if state.epoch >= spec.train.epochs else "")
    return {"step": state.step, "stop_reason": state.stop_reason}
