"""``pdgen review``: review a staged run in a local web app, then publish what was approved.

    pdgen review s3://content/ [--run RUN_ID] [--port 8765]
    pdgen review s3://content/ --host 0.0.0.0 --token "$(python -c 'import secrets; print(secrets.token_urlsafe(24))')"

It binds 127.0.0.1 unless ``--host`` says otherwise; any other address needs ``--token`` (or
``PDGEN_REVIEW_TOKEN``). See ``pdgen_core.review``.
"""

from __future__ import annotations

import getpass
from typing import Optional

import typer

from pdgen_core.errors import exit_code


def register(app: typer.Typer) -> None:
    @app.command("review")
    def review_cmd(
        output: str = typer.Argument(..., help="The job's output.uri (s3:// or a folder)."),
        run: Optional[str] = typer.Option(None, "--run", help="Review only this staged run."),
        host: str = typer.Option("127.0.0.1", help="Address to bind; not loopback needs --token."),
        port: int = typer.Option(8765, min=0, max=65535),
        token: Optional[str] = typer.Option(None, envvar="PDGEN_REVIEW_TOKEN",
                                            help="Every request must carry it (?token= once, then a cookie)."),
        reviewer: Optional[str] = typer.Option(None, help="Name recorded with each decision (default: $USER)."),
        allow_older: bool = typer.Option(False, help="Promote a run older than the published one."),
    ) -> None:
        """Start the review web app: staged runs, a sampled review queue per task and locale,
        per-row approve / reject / edit, and a promote that publishes what the review allows."""
        import uvicorn

        from pdgen_core import run_record
        from pdgen_core.review import create_app

        try:
            if run is not None and run not in run_record.promotable_runs(output):
                raise run_record.unknown_promote(output, run)
            web = create_app(output, reviewer or getpass.getuser(), run, token, host, allow_older)
        except Exception as exc:
            code = exit_code(exc)
            if code is None:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code) from None
        shown = f"[{host}]" if ":" in host else host
        path = f"/runs/{run}" if run else "/"
        typer.echo(f"review at http://{shown}:{port}{path}" + ("?token=<your token>" if token else ""))
        uvicorn.run(web, host=host, port=port, log_level="warning")
