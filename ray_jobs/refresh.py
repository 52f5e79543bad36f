"""Refresh content after catalog or price changes: an incremental run for schedulers.

    python ray_jobs/refresh.py SPEC.yaml [--changes changes.parquet] [--resume RUN_ID]
    pdgen submit SPEC.yaml --entrypoint refresh --address http://127.0.0.1:8265

Exits 0 with a one-line summary, also when there is nothing to do.
"""

from pdgen_core.cli import app

if __name__ == "__main__":
    import sys

    app(["refresh", *sys.argv[1:]])
