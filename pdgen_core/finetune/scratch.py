"""The trained ``pdgen-tiny``: a tiny Llama and its own BPE tokenizer trained from scratch on the
synthetic catalog, so the demo's default model writes readable product text without any download.

``ensure_trained_tiny()`` trains once per node (under a file lock) with the fine-tune loop in Ray
Train's local mode (in this process, no cluster needed) under a wall-clock budget, and moves the
result into ``<cache>/models/pdgen-tiny-trained-v1`` atomically; ``tiny_model_path()`` and
``resolve_model("pdgen-tiny")`` then return it. Prompts come from the description task's template
(currency USD, ``price_usd``) and the targets are the catalog's descriptions.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from pdgen_core.finetune.config import load_finetune_spec
from pdgen_core.finetune.train import fit, prepare
from pdgen_core.log import get_logger
from pdgen_core.models.resolve import _node_lock
from pdgen_core.models.tiny import TINY_VERSION
from pdgen_core.settings import get_settings

SETUP_RESERVE_S = 60  # tokenizer, model build, final evaluation and export, on a busy 2-core box
TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "finetune-tiny.yaml"


def trained_tiny_path() -> Path:
    return get_settings().cache_dir / "models" / f"pdgen-tiny-trained-v{TINY_VERSION}"


def tiny_spec(max_seconds: float, work: Path):
    """``configs/finetune-tiny.yaml`` (the one recipe), run in-process under a time box, with its
    checkpoints in ``work``."""

    return load_finetune_spec(TINY_YAML, [
        f"train.max_seconds={max_seconds}", "resources.num_workers=0",
        f"resources.cpus_per_worker={min(4, os.cpu_count() or 1)}",
        f"storage_path={work / 'ray'}", f"output.uri={work / 'out'}",
    ])


def ensure_trained_tiny(max_seconds: float = 300) -> Path:
    """The trained tiny model's folder, training it first (within ``max_seconds``) if absent."""

    dest = trained_tiny_path()
    if (dest / "config.json").is_file():
        return dest
    with _node_lock(dest):
        if (dest / "config.json").is_file():  # trained by another process while we waited
            return dest
        log = get_logger(component="finetune.scratch", model=dest.name)
        t0 = time.monotonic()
        work = dest.with_name(dest.name + f".work{os.getpid()}")
        spec = tiny_spec(max(10.0, max_seconds - SETUP_RESERVE_S), work)
        out = fit(spec, prepare(spec))
        try:
            tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for p in out.best_dir.iterdir():
                if p.is_file() and p.suffix in (".json", ".safetensors") and p.name not in (
                        "pdgen_state.json", "samples.json"):
                    shutil.copy2(p, tmp / p.name)
            samples = out.best_dir / "samples.json"
            card = {
                "name": "pdgen-tiny", "weights": "trained", "data": spec.data.uri,
                "seconds": round(time.monotonic() - t0, 1),
                "metrics": {k: v for k, v in out.metrics.items() if isinstance(v, (int, float, str))},
                "hyperparameters": spec.model_dump(mode="json", include={"model", "optim", "train"}),
                "samples": json.loads(samples.read_text()) if samples.is_file() else [],
            }
            (tmp / "pdgen_card.json").write_text(json.dumps(card, indent=2))
            os.rename(tmp, dest)
        finally:
            out.cleanup()
            shutil.rmtree(work, ignore_errors=True)
        log.info("tiny_trained", seconds=card["seconds"], val_loss=card["metrics"].get("val_loss"),
                 steps=card["metrics"].get("step"))
    return dest
