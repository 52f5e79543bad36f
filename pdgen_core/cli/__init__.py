"""``pdgen``: the command line, one module per command group; the library never imports Typer.

    run.py       validate, run, refresh, synth-catalog
    versions.py  versions, show, diff, rollback, promote
    jobs.py      submit, status, logs, stop, jobs (Ray Jobs API)
    model.py     model upload (a resolved model or an adapter, to S3 for a cluster)
    finetune.py  finetune, eval
    report.py    report
    audit.py     audit
    review.py    review (the review web app)
    service.py   service start, status, stop (the long-lived generation service)

Exit codes (``pdgen_core.errors``): 0 ok, 1 the job failed, 2 the input (spec, data, credentials)
is wrong. ``--help`` stays fast: the heavy parts (Ray, vLLM, torch) load inside the commands.
"""

from __future__ import annotations

from pdgen_core.cli import (  # noqa: F401 (run: its commands)
    audit, finetune, jobs, model, report, review, run, service, versions)
from pdgen_core.cli.app import app

for _group in (versions, jobs, finetune, report, audit, model, review, service):
    _group.register(app)


def main() -> None:  # pragma: no cover
    app()


__all__ = ["app", "main"]
