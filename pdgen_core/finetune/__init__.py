"""Fine-tuning: LoRA adapters per task and the from-scratch tiny model, on Ray Train.

Public face (heavy imports stay inside the functions that need them)::

    load_finetune_spec(path) -> FinetuneSpec        # YAML -> validated spec (SpecError lists problems)
    run_finetune(spec) -> dict                       # train, evaluate, register; resumable by name
    ensure_trained_tiny(max_seconds=300) -> Path     # the trained pdgen-tiny folder (trained once)
    resolve_adapter(output_uri, task, ref="latest") -> (Path, int)
    list_adapters(output_uri, task=None) -> list[dict]
    evaluate_spec(spec, ...) -> dict                 # `pdgen eval`: fine-tuned vs untuned vs template
"""

from pdgen_core.finetune.config import FinetuneSpec, load_finetune_spec
from pdgen_core.finetune.registry import list_adapters, resolve_adapter, resolve_adapter_uri


def run_finetune(spec, register: bool = True):
    from pdgen_core.finetune.run import run_finetune as _run

    return _run(spec, register=register)


def ensure_trained_tiny(max_seconds: float = 300):
    from pdgen_core.finetune.scratch import ensure_trained_tiny as _ensure

    return _ensure(max_seconds)


def evaluate_spec(spec, **kw):
    from pdgen_core.finetune.evaluate import evaluate_spec as _eval

    return _eval(spec, **kw)


__all__ = [
    "FinetuneSpec", "ensure_trained_tiny", "evaluate_spec", "list_adapters", "load_finetune_spec",
    "resolve_adapter", "resolve_adapter_uri", "run_finetune",
]
