"""Training through Ray Train: data -> ``TorchTrainer`` -> the best checkpoint, and its card.

``prepare`` builds the pairs, ``fit`` trains (``run.run_finetune`` drives both and registers). The
base model folder is resolved by the caller and passed in (``base_path``): the workers get the
path, never the job of resolving ``pdgen-tiny`` (which trains it), so imports run one way:
``run`` -> ``train`` -> ``loop``; ``scratch`` (the tiny model) -> ``train``. Ray Train
writes checkpoints to ``spec.storage_path`` (``s3://`` through pdgen's S3 filesystem, or a local
folder) under ``RunConfig(name=spec.name)``; running the same name again resumes from the latest
checkpoint (Ray Train V2 reloads the run's checkpoint manager snapshot from storage and the loop
reads ``ray.train.get_checkpoint()``; ``TorchTrainer.restore`` is deprecated in V2). A run that had
already finished returns at once.

``resources.num_workers: 0`` runs the same loop in this process (Ray Train's local mode, no Ray
cluster); ``ensure_trained_tiny`` uses it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pdgen_core import storage
from pdgen_core.finetune import data as D
from pdgen_core.finetune import metrics as M
from pdgen_core.finetune.config import FinetuneSpec
from pdgen_core.finetune.loop import STATE_FILE, train_loop_per_worker
from pdgen_core.log import get_logger
from pdgen_core.models.chat import chat_template, prompt_format as resolve_format
from pdgen_core.models.resolve import model_identity
from pdgen_core.tasks import TASKS


@dataclass
class Prepared:
    """The splits, what was dropped and why, the from-scratch tokenizer, and the data fingerprint."""

    splits: dict[str, list[D.Pair]]
    dropped: dict[str, int]
    tokenizer_json: str | None = None
    fingerprint: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)   # references mended (pairs, joins)


@dataclass
class FitOutcome:
    best_dir: Path                 # a local folder holding the best checkpoint's files
    metrics: dict[str, Any]        # the metrics reported with it
    path: str | None               # Ray Train's run folder (None in local mode)
    checkpoint_uri: str | None     # where the best checkpoint lives in storage
    seconds: float
    _cleanup: list[Path] = field(default_factory=list)

    def cleanup(self) -> None:
        for p in self._cleanup:
            shutil.rmtree(p, ignore_errors=True)


def prompt_format(spec: FinetuneSpec, base_path: Path | None) -> str:
    """``chat`` or ``completion``: the spec's ``model.prompt_format`` on this base model."""
    if spec.model.from_scratch or base_path is None:
        return "completion"

    return resolve_format(spec.model.prompt_format, base_path)


def pairs_for(spec: FinetuneSpec, rows: list[dict], base_path: Path | None) -> tuple[list[D.Pair], dict]:
    """The spec's pairs from ``rows`` with the prompt generation sends, and the drop counts."""
    d = spec.data
    prompt = None
    if prompt_format(spec, base_path) == "chat":
        def prompt(row: dict) -> str:
            return D.chat_prompt(str(base_path), spec.task, row, spec.locale, d.currency, spec.model.few_shot)
    return D.build_pairs(rows, spec.task, spec.locale, d.currency, d.min_chars, d.max_chars,
                         prompt=prompt, repair=d.repair_glued)


def clean_for_training(spec: FinetuneSpec, pairs: list[D.Pair], rows: list[dict],
                       dropped: dict[str, int], fmt: str = "completion") -> list[D.Pair]:
    """Train/val pairs as the spec cleans them: details the facts lack cut (``data.ground_details``),
    the brand named (``data.name_brand``), a full stop
    at the end (``data.end_sentence``), and only
    references the task's guardrails accept against their own row (``data.reference_guard``)."""
    import dataclasses

    d = spec.data
    by_sku = {str(r.get("sku") or i): r for i, r in enumerate(rows)}
    if d.ground_details:
        grounded = []
        for p in pairs:
            target, cut = D.ground_details(p.target, by_sku.get(p.sku, {}), spec.task)
            if cut:
                dropped["reference_details_cut"] = dropped.get("reference_details_cut", 0) + 1
            if len(target) < d.min_chars:
                dropped["reference_too_short_after_cut"] = dropped.get("reference_too_short_after_cut", 0) + 1
                continue
            grounded.append(dataclasses.replace(p, target=target))
        pairs = grounded
    if d.name_brand:
        pairs = [dataclasses.replace(p, target=D.name_brand(p.target, p.brand)) for p in pairs]
    if d.end_sentence:
        pairs = [dataclasses.replace(p, target=D.end_sentence(p.target)) for p in pairs]
    if not d.reference_guard:
        return pairs
    brands = frozenset(r["brand"] for r in rows if r.get("brand"))
    reasons = M.guard_reasons([p.target for p in pairs], spec.task, [by_sku.get(p.sku, {}) for p in pairs],
                              d.currency, prompt_format=fmt, known_brands=brands)
    kept = []
    for p, r in zip(pairs, reasons):
        if r:
            dropped[f"reference_{r}"] = dropped.get(f"reference_{r}", 0) + 1
        else:
            kept.append(p)
    return kept


def prepare(spec: FinetuneSpec, rows: list[dict] | None = None, base_path: Path | None = None) -> Prepared:
    """Load the catalog (unless ``rows`` is given), build pairs, split, clean the train and
    validation pairs, and for from-scratch runs train the tokenizer on the training split
    (deterministic, so a resumed run gets the same one). The test split is left as built."""
    d = spec.data
    if rows is None:
        rows = D.load_rows(d.uri, d.columns, d.limit)
    pairs, counts = pairs_for(spec, rows, base_path)
    repaired = {k: counts.pop(k) for k in D.REPAIR_COUNTS if k in counts}
    dropped = dict(counts)
    splits = D.split_pairs(pairs, d.val_fraction, d.test_fraction, d.split_salt)
    for k in ("train", "val"):
        splits[k] = clean_for_training(spec, splits[k], rows, dropped, prompt_format(spec, base_path))
    if not splits["train"] or not splits["val"]:
        raise ValueError(f"data.uri {d.uri!r}: {len(pairs)} usable pairs gave {len(splits['train'])} train "
                         f"and {len(splits['val'])} validation; add rows or raise data.val_fraction")
    tok_json = None
    if spec.model.from_scratch:
        from pdgen_core.models.tiny import train_tokenizer

        texts = [t for p in splits["train"] for t in (p.prompt, p.target)]
        tok_json = train_tokenizer(texts, spec.model.tiny.vocab_size).backend_tokenizer.to_str()
    return Prepared(splits, dropped, tok_json, D.fingerprint(splits["train"]),
                    {k: len(v) for k, v in splits.items()}, repaired)


def _run_config(spec: FinetuneSpec):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    loc = storage.resolve(spec.storage_path)
    es = spec.train.early_stopping
    return RunConfig(
        name=spec.name,
        storage_path=loc.path,
        storage_filesystem=loc.fs if loc.is_s3 else None,
        checkpoint_config=CheckpointConfig(num_to_keep=spec.train.keep_checkpoints,
                                           checkpoint_score_attribute=es.metric, checkpoint_score_order=es.mode),
        failure_config=FailureConfig(max_failures=spec.resources.max_failures),
    )


def _best_local(root: Path, metric: str, mode: str) -> tuple[Path, dict]:
    """Local mode keeps every checkpoint folder under ``root``: pick the best by its last metrics."""
    scored = []
    for d in root.iterdir():
        if (d / STATE_FILE).is_file():
            hist = json.loads((d / STATE_FILE).read_text())["history"]
            if hist:
                v = hist[-1][metric]
                scored.append((v if mode == "max" else -v, hist[-1]["step"], d, hist[-1]))
    if not scored:
        raise RuntimeError(f"the local run wrote no checkpoint under {root}")
    _, _, d, m = max(scored, key=lambda s: (s[0], s[1]))
    return d, m


def fit(spec: FinetuneSpec, prep: Prepared, base_path: Path | None = None) -> FitOutcome:
    """Train through Ray Train's ``TorchTrainer``; return the best checkpoint as a local folder.
    ``base_path``: the base model folder on this node (LoRA runs); each worker uses it, or on a
    node without it resolves ``model.source`` into that node's cache."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    log = get_logger(component="finetune", run=spec.name, task=spec.task)
    local = spec.resources.num_workers == 0
    ckpt_root = Path(tempfile.mkdtemp(prefix="pdgen-ft-local-")) if local else None
    config = {
        "spec": spec.model_dump(mode="json"),
        "train": [asdict(p) for p in prep.splits["train"]],
        "val": [asdict(p) for p in prep.splits["val"]],
        "tokenizer_json": prep.tokenizer_json,
        "base_path": str(base_path) if base_path else None,
        "local_mode": local,
        "ckpt_root": str(ckpt_root) if ckpt_root else None,
    }
    if not local:
        import ray

        if not ray.is_initialized():
            from pdgen_core.settings import get_settings

            ray.init(address=get_settings().ray_address or "local")  # never join a stray `ray start` cluster
    r = spec.resources
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=r.num_workers, use_gpu=r.use_gpu,
                                     resources_per_worker={"CPU": r.cpus_per_worker}),
        run_config=_run_config(spec),
    )
    t0 = time.monotonic()
    result = trainer.fit()
    seconds = time.monotonic() - t0
    es = spec.train.early_stopping
    if local:
        best_dir, metrics = _best_local(ckpt_root, es.metric, es.mode)
        return FitOutcome(best_dir, metrics, None, None, seconds, [ckpt_root])
    if result.best_checkpoints:
        ckpt = result.get_best_checkpoint(es.metric, es.mode)
        metrics = next(m for c, m in result.best_checkpoints if c.path == ckpt.path)
    else:
        ckpt, metrics = result.checkpoint, dict(result.metrics or {})
    if ckpt is None:
        raise RuntimeError(f"run {spec.name!r} reported no checkpoint; see the Ray Train logs at {result.path}")
    tmp = Path(tempfile.mkdtemp(prefix="pdgen-ft-best-"))
    ckpt.to_directory(str(tmp))
    uri = ("s3://" + ckpt.path) if storage.resolve(spec.storage_path).is_s3 else ckpt.path
    log.info("fit_done", seconds=round(seconds, 1), best_checkpoint=uri,
             **{k: metrics.get(k) for k in ("step", es.metric, "stop_reason")})
    return FitOutcome(tmp, metrics, result.path, uri, seconds, [tmp])


def card_for(spec: FinetuneSpec, prep: Prepared, out: FitOutcome, base_path: Path | None = None) -> dict[str, Any]:
    """The registry card: base model, data (counts, repairs, drops), the prompt it was trained
    on, metrics, hyperparameters, run id."""

    base = None
    if not spec.model.from_scratch and base_path is not None:
        base = {"source": spec.model.source, "identity": model_identity(base_path)}
    fmt = prompt_format(spec, base_path)
    task = TASKS[spec.task]
    prompt = {"format": fmt, "few_shot": spec.model.few_shot if fmt == "chat" else None,
              "template": task.template_for(fmt, chat_template(base_path) if fmt == "chat" else "")}
    samples = out.best_dir / "samples.json"
    return {
        "task": spec.task, "locale": spec.locale, "kind": spec.kind, "run_id": spec.name,
        "template": task.template_id, "prompt": prompt, "base_model": base,
        "data": {"uri": spec.data.uri, "fingerprint": prep.fingerprint, "pairs": prep.counts,
                 "repaired": prep.repaired, "dropped": prep.dropped, "spec": spec.data.model_dump(mode="json")},
        "metrics": {k: v for k, v in out.metrics.items() if isinstance(v, (int, float, str, bool))},
        "hyperparameters": spec.model_dump(mode="json", include={"model", "lora", "optim", "train", "resources", "seed"}),
        "checkpoint": out.checkpoint_uri, "ray_run_path": out.path,
        "samples": json.loads(samples.read_text()) if samples.is_file() else [],
    }
