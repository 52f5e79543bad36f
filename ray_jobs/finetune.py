"""Fine-tune job: parse a fine-tune spec, train on Ray Train, publish the best checkpoint.

Launch on a cluster through the Ray Jobs API (the spec travels in the working dir)::

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python ray_jobs/finetune.py pdgen_core/configs/finetune-lora-smollm2-myntra.yaml \
        --set resources.use_gpu=true --set resources.num_workers=4

or here: ``python ray_jobs/finetune.py SPEC [--set train.max_steps=20] [--no-register]``.
Re-submitting with the same spec `name` resumes from the run's latest checkpoint.

It is ``pdgen finetune``: the same options, messages and exit codes (``pdgen_core.errors``).
"""

from pdgen_core.cli import app

if __name__ == "__main__":
    import sys

    app(["finetune", *sys.argv[1:]])
