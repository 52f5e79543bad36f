"""``pdgen submit|status|logs|stop|jobs``: job specs on a Ray cluster through the Jobs API
(``pdgen_core.jobs_api``)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from pdgen_core.jobs_api import Entrypoint, list_jobs, logs, status, stop, submit, wait_for


_ADDRESS = typer.Option(None, "--address", envvar=["RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"],
                        help="Ray dashboard (Jobs API) URL, e.g. http://HEAD:8265.")


@contextmanager
def _errors():
    """A missing address, spec or entry point, or an unreachable cluster: one line, exit 2."""
    try:
        yield
    except Exception as e:
        from ray.exceptions import RayError  # AuthenticationError among them

        if not isinstance(e, (ValueError, OSError, RuntimeError, RayError)):
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    """Add ``submit``, ``status``, ``logs``, ``stop`` and ``jobs`` to the pdgen command line."""

    @app.command("submit")
    def submit_cmd(
        spec: Path = typer.Argument(..., help="Job spec YAML."),
        address: str = _ADDRESS,
        entrypoint: Entrypoint = typer.Option(Entrypoint.generate, help="Which ray_jobs/ script runs."),
        wait: bool = typer.Option(False, "--wait", help="Follow the logs and exit with the job's outcome."),
        no_pip: bool = typer.Option(False, "--no-pip", help="The cluster already has pdgen's dependencies."),
        working_dir: Path = typer.Option(None, help="Source tree to ship (default: this pdgen's)."),
        set_: list[str] = typer.Option([], "--set", help="Forwarded: override a spec field, a.b=c."),
        changes: Optional[str] = typer.Option(
            None, help="Forwarded to refresh: the changes feed (s3://, or a local file shipped with the job)."),
        resume: Optional[str] = typer.Option(None, help="Forwarded: resume the crashed run RUN_ID."),
    ) -> None:
        """Submit a job spec to a Ray cluster through the Jobs API; print the job id. --set, --changes
        and --resume reach the entry point as `pdgen run|refresh` takes them."""
        with _errors():
            job_id = submit(spec, address, entrypoint.value, sets=set_, changes=changes, resume=resume,
                            pip=not no_pip, working_dir=working_dir)
        typer.echo(job_id)
        if wait:
            with _errors():
                for chunk in logs(job_id, address, follow=True):
                    typer.echo(chunk, nl=False)
                final = wait_for(job_id, address)
            typer.echo(f"{job_id} {final.status} {final.message}".rstrip())
            raise typer.Exit(0 if final.status == "SUCCEEDED" else 1)

    @app.command("status")
    def status_cmd(job: str, address: str = _ADDRESS) -> None:
        """Print a submitted job's state and message."""
        with _errors():
            info = status(job, address)
        typer.echo(f"{info.job_id} {info.status} {info.message}".rstrip())

    @app.command("logs")
    def logs_cmd(
        job: str, address: str = _ADDRESS, follow: bool = typer.Option(False, "--follow", "-f")
    ) -> None:
        """Print a submitted job's log; --follow streams it until the job ends."""
        with _errors():
            for chunk in logs(job, address, follow=follow):
                typer.echo(chunk, nl=False)

    @app.command("stop")
    def stop_cmd(job: str, address: str = _ADDRESS) -> None:
        """Stop a submitted job."""
        with _errors():
            stopping = stop(job, address)
        typer.echo(f"{job} {'stopping' if stopping else 'already ended'}")

    @app.command("jobs")
    def jobs_cmd(address: str = _ADDRESS) -> None:
        """List the cluster's jobs, oldest first."""
        with _errors():
            jobs = list_jobs(address)
        for j in jobs:
            started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(j.start_time)) if j.start_time else "-"
            typer.echo(f"{j.job_id}\t{j.status}\t{started}\t{j.entrypoint}")
