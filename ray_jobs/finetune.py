"""Fine-tune job: parse a fine-tune spec, train on Ray Train, publish the best checkpoint.

Launch on a cluster through the Ray Jobs API (the spec travels in the working dir)::

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python ray_jobs/finetune.py pdgen_core/configs/finetune-lora-smollm2-myntra.yaml \
        --set resources.use_gpu=true --set resources.num_workers=4

or here: ``python ray_jobs/finetune.py SPEC [--set train.max_steps=20]`` (same as ``pdgen finetune``).
Re-submitting with the same spec `name` resumes from the run's latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from pdgen_core.finetune import load_finetune_spec, run_finetune
    from pdgen_core.models.resolve import ModelError
    from pdgen_core.spec import SpecError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--no-register", action="store_true")
    a = ap.parse_args(argv)
    try:
        spec = load_finetune_spec(a.spec, a.overrides)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        summary = run_finetune(spec, register=not a.no_register)
    except (ValueError, FileNotFoundError, ModelError) as exc:  # bad data or model: say what to fix
        print(f"{a.spec}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
