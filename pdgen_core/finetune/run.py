"""The fine-tune job's driver: resolve the base model, prepare the data, train, register.

``run_finetune(spec)`` is what ``pdgen finetune SPEC`` and ``ray_jobs/finetune.py`` call. The base
model is resolved here, once on the driver's node (``pdgen-tiny`` is trained here on first use),
and its folder goes to the workers with the data (``train.fit``). A re-run with the same ``name``
resumes from the run's latest checkpoint; one that had finished registers nothing new.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pdgen_core.finetune import train
from pdgen_core.finetune import registry
from pdgen_core.finetune.config import FinetuneSpec
from pdgen_core.log import get_logger
from pdgen_core.models.resolve import resolve_model


def base_model_path(spec: FinetuneSpec) -> Path:
    """The base model folder; ``pdgen-tiny`` means the trained tiny model (trained on first use)."""
    if spec.model.source == "pdgen-tiny":
        from pdgen_core.finetune.scratch import ensure_trained_tiny

        return ensure_trained_tiny()

    return resolve_model(spec.model.source)


def run_finetune(spec: FinetuneSpec, register: bool = True) -> dict[str, Any]:
    """Prepare data, train, and (``register``) publish the best checkpoint; returns a summary."""

    log = get_logger(component="finetune", run=spec.name, task=spec.task)
    base = None if spec.model.from_scratch else base_model_path(spec)
    prep = train.prepare(spec, base_path=base)
    log.info("data_prepared", **prep.counts, repaired=prep.repaired, dropped=prep.dropped,
             fingerprint=prep.fingerprint[:12])
    out = train.fit(spec, prep, base)
    try:
        summary: dict[str, Any] = {"run_id": spec.name, "metrics": out.metrics, "seconds": round(out.seconds, 1),
                                   "checkpoint": out.checkpoint_uri, "pairs": prep.counts,
                                   "repaired": prep.repaired, "dropped": prep.dropped}
        if register:
            card = train.card_for(spec, prep, out, base)
            version, uri = registry.publish(spec.output.uri, spec.task, out.best_dir, card, kind=spec.kind)
            summary.update(version=version, uri=uri)
            log.info("registered", version=version, uri=uri)
        return summary
    finally:
        out.cleanup()
