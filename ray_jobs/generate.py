"""Generate content for a catalog: the main pdgen job.

    python ray_jobs/generate.py SPEC.yaml [--set a.b=c ...] [--resume RUN_ID]
    pdgen submit SPEC.yaml --address http://127.0.0.1:8265          # through the Ray Jobs API

Inside a Ray job, ``ray.init()`` joins the cluster that runs it.
"""

from pdgen_core.cli import app

if __name__ == "__main__":
    import sys

    app(["run", *sys.argv[1:]])
