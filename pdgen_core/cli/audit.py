"""``pdgen audit``: a sample of a run's accepted texts with their facts, for a person to judge
(``pdgen_core.audit``)."""

from __future__ import annotations

from pathlib import Path

import typer

from pdgen_core.audit import AuditError, sample, write


def register(app: typer.Typer) -> None:
    """Add ``audit`` to the pdgen command line."""

    @app.command("audit")
    def audit_cmd(
        run_id: str = typer.Argument(..., help="Run id, as in runs/<run_id>.json."),
        output: str = typer.Option(..., "--output", "-o", envvar="PDGEN_OUTPUT",
                                   help="The job's output.uri (s3:// or a folder)."),
        per_task: int = typer.Option(20, "--per-task", min=1, help="Texts to sample per task."),
        out: Path = typer.Option(Path("audit.csv"), "--out", help="File to write: .csv, else JSON lines."),
        seed: int = typer.Option(0, help="Sampling seed: the same seed gives the same sample."),
    ) -> None:
        """Export a sample of a run's accepted texts with their facts, for a person to judge."""
        try:
            rows = sample(output, run_id, per_task, seed)
        except (AuditError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        write(rows, out)
        by_task: dict[str, int] = {}
        for r in rows:
            by_task[r["task"]] = by_task.get(r["task"], 0) + 1
        typer.echo(f"wrote {len(rows)} texts to {out} ("
                   + (", ".join(f"{t}: {n}" for t, n in by_task.items()) or "none accepted") + ")")
