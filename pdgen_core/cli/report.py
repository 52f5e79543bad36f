"""``pdgen report``: write a run's HTML report (``pdgen_core.report``) to one static file.

    pdgen report RUN_ID --output s3://content/demo/ --out report.html

``--output`` is the job's ``output.uri`` (the folder holding ``runs/`` and ``content/``); the S3
endpoint and credentials come from the environment, as for every other command.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``report`` to the pdgen command line."""

    @app.command("report")
    def report_cmd(
        run_id: str = typer.Argument(..., help="Run id, as in runs/<run_id>.json."),
        output: str = typer.Option(..., "--output", "-o", envvar="PDGEN_OUTPUT",
                                   help="The job's output.uri (s3:// or a folder)."),
        out: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write."),
    ) -> None:
        """Write a run's HTML report: counts, reject reasons, token and length charts, throughput,
        changed texts beside their previous version. One static file; open it in any browser."""
        from pdgen_core import report, storage

        # A missing record is the usual mistake (wrong run id or output); say which file was looked for.
        record = storage.resolve(output).child("runs", f"{run_id}.json")
        try:
            found = storage.exists(record)
        except OSError as exc:
            typer.echo(f"error: storage: {exc}\nCheck --output, the bucket, and AWS_* credentials in "
                       "the environment.", err=True)
            raise typer.Exit(2) from None
        if not found:
            typer.echo(f"error: no run record {record.uri}; check the run id and --output "
                       "(`pdgen versions OUTPUT` lists each version's run id)", err=True)
            raise typer.Exit(2)
        path = report.build_report(output, run_id, str(out))
        typer.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")
