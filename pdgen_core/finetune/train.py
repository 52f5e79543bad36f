"""The fine-tune job's driver: data -> Ray Train ``TorchTrainer`` -> best checkpoint -> registry.

``run_finetune(spec)`` is what ``pdgen finetune SPEC`` and ``ray_jobs/finetune.py`` call. Ray Train
writes checkpoints to ``spec.storage_path`` (``s3://`` through pdgen's S3 filesystem, or a local
folder) under ``RunConfig(name=spec.name)``; running the same name again resumes from the latest
checkpoint (Ray Train V2 reloads the run's checkpoint manager snapshot from storage and the loop
reads ``ray.train.get_checkpoint()``; ``TorchTrainer.restore`` is deprecated in V2). A run that had
already finished returns at once and registers nothing new.

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
from pdgen_core.finetune.config import FinetuneSpec
from pdgen_core.finetune.loop import STATE_FILE, train_loop_per_worker
from pdgen_core.log import get_logger


@dataclass
class Prepared:
    """The splits, what was dropped and why, the from-scratch tokenizer, and the data fingerprint."""

    splits: dict[str, list[D.Pair]]
    dropped: dict[str, int]
    tokenizer_json: str | None = None
    fingerprint: str = ""
    counts: dict[str, int] = field(default_factory=dict)


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


def base_model_path(spec: FinetuneSpec) -> Path:
    """The base model folder; ``pdgen-tiny`` means the trained tiny model (trained on first use)."""
    from pdgen_core.models.resolve import resolve_model

    if spec.model.source == "pdgen-tiny":
        from pdgen_core.finetune.scratch import ensure_trained_tiny

        return ensure_trained_tiny()
    return resolve_model(spec.model.source)


def prepare(spec: FinetuneSpec, rows: list[dict] | None = None) -> Prepared:
    """Load the catalog (unless ``rows`` is given), build pairs, split, and for from-scratch runs
    train the tokenizer on the training split (deterministic, so a resumed run gets the same one)."""
    d = spec.data
    if rows is None:
        rows = D.load_rows(d.uri, d.columns, d.limit)
    pairs, dropped = D.build_pairs(rows, spec.task, spec.locale, d.currency, d.min_chars, d.max_chars)
    splits = D.split_pairs(pairs, d.val_fraction, d.test_fraction, d.split_salt)
    if not splits["train"] or not splits["val"]:
        raise ValueError(f"data.uri {d.uri!r}: {len(pairs)} usable pairs gave {len(splits['train'])} train "
                         f"and {len(splits['val'])} validation; add rows or raise data.val_fraction")
    tok_json = None
    if spec.model.from_scratch:
        from pdgen_core.models.tiny import train_tokenizer

        texts = [t for p in splits["train"] for t in (p.prompt, p.target)]
        tok_json = train_tokenizer(texts, spec.model.tiny.vocab_size).backend_tokenizer.to_str()
    return Prepared(splits, dict(dropped), tok_json, D.fingerprint(splits["train"]),
                    {k: len(v) for k, v in splits.items()})


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


def fit(spec: FinetuneSpec, prep: Prepared) -> FitOutcome:
    """Train through Ray Train's ``TorchTrainer``; return the best checkpoint as a local folder."""
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


def card_for(spec: FinetuneSpec, prep: Prepared, out: FitOutcome) -> dict[str, Any]:
    """The registry card: base model, data fingerprint, metrics, hyperparameters, run id."""
    from pdgen_core.models.resolve import model_identity
    from pdgen_core.tasks import TASKS

    base = None
    if not spec.model.from_scratch:
        base = {"source": spec.model.source, "identity": model_identity(base_model_path(spec))}
    samples = out.best_dir / "samples.json"
    return {
        "task": spec.task, "locale": spec.locale, "kind": spec.kind, "run_id": spec.name,
        "template": TASKS[spec.task].template_id, "base_model": base,
        "data": {"uri": spec.data.uri, "fingerprint": prep.fingerprint, "pairs": prep.counts,
                 "dropped": prep.dropped, "spec": spec.data.model_dump(mode="json")},
        "metrics": {k: v for k, v in out.metrics.items() if isinstance(v, (int, float, str, bool))},
        "hyperparameters": spec.model_dump(mode="json", include={"model", "lora", "optim", "train", "resources", "seed"}),
        "checkpoint": out.checkpoint_uri, "ray_run_path": out.path,
        "samples": json.loads(samples.read_text()) if samples.is_file() else [],
    }


def run_finetune(spec: FinetuneSpec, register: bool = True) -> dict[str, Any]:
    """Prepare data, train, and (``register``) publish the best checkpoint; returns a summary."""
    from pdgen_core.finetune import registry

    log = get_logger(component="finetune", run=spec.name, task=spec.task)
    if not spec.model.from_scratch:
        base_model_path(spec)  # make or fetch it here once, before the workers look for it
    prep = prepare(spec)
    log.info("data_prepared", **prep.counts, dropped=prep.dropped, fingerprint=prep.fingerprint[:12])
    out = fit(spec, prep)
    try:
        summary: dict[str, Any] = {"run_id": spec.name, "metrics": out.metrics, "seconds": round(out.seconds, 1),
                                   "checkpoint": out.checkpoint_uri, "pairs": prep.counts, "dropped": prep.dropped}
        if register:
            card = card_for(spec, prep, out)
            version, uri = registry.publish(spec.output.uri, spec.task, out.best_dir, card, kind=spec.kind)
            summary.update(version=version, uri=uri)
            log.info("registered", version=version, uri=uri)
        return summary
    finally:
        out.cleanup()
