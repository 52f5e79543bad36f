"""``pdgen versions|show|diff|rollback|promote``: the content tables' versions and the publish gate
(``pdgen_core.versions``)."""

from __future__ import annotations

import json
from typing import Optional

import typer

from pdgen_core.versions import PublishConflict, VersionError, diff, promote, rollback, show, versions


def register(app: typer.Typer) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()

    def _fail(exc: Exception) -> None:
        Console(stderr=True).print(f"error: {exc}", markup=False)
        raise typer.Exit(2)

    @app.command("versions")
    def versions_cmd(output: str, task: str = typer.Option("description")):
        """List the content table's versions (run id, time, counts, published)."""
        try:
            rows = versions(output, task)
        except VersionError as exc:
            _fail(exc)
        t = Table(title=f"{output} content/{task}")
        for c in ("version", "run_id", "time", "operation", "inserted", "updated", "deleted", "published"):
            t.add_column(c)
        for r in rows:
            t.add_row(*(str(x) if x is not None else "-" for x in (
                r["version"], r["run_id"], r["time"], r["operation"], r["rows_inserted"],
                r["rows_updated"], r["rows_deleted"], "yes" if r["published"] else "")))
        console.print(t)

    @app.command("show")
    def show_cmd(output: str, task: str = typer.Option("description"), sku: str = typer.Option(...),
                 version: Optional[int] = typer.Option(None), latest: bool = typer.Option(
                     False, help="Read the latest version, published or not.")):
        """Show a sku's content (the published version unless --version or --latest)."""
        try:
            rows, v = show(output, task, sku, version, published=not latest)
        except VersionError as exc:
            _fail(exc)
        console.print(f"content/{task} version {v}: {len(rows)} row(s) for {sku}")
        for r in rows:
            console.print_json(json.dumps(r, default=str))

    @app.command("diff")
    def diff_cmd(output: str, task: str = typer.Option("description"),
                 from_: int = typer.Option(..., "--from"), to: int = typer.Option(..., "--to")):
        """Rows added, changed and removed between two versions, with samples."""
        try:
            d = diff(output, task, from_, to)
        except VersionError as exc:
            _fail(exc)
        console.print(f"v{from_} -> v{to}: added {d['added']}, changed {d['changed']}, removed {d['removed']}")
        for c in d["samples"]["changed"]:
            console.print(f"  {c['key'][0]}: {c['old']!r}\n    -> {c['new']!r}", markup=False)

    @app.command("rollback")
    def rollback_cmd(output: str, task: str = typer.Option("description"), to: int = typer.Option(...)):
        """Restore content/<task> to version TO (as a new version) and publish it."""
        try:
            v = rollback(output, task, to)
        except VersionError as exc:
            _fail(exc)
        console.print(f"content/{task} restored to v{to} as v{v}; published")

    @app.command("promote")
    def promote_cmd(run_id: str, output: str = typer.Option(..., help="The run's output.uri")):
        """Publish the content versions a staged run committed."""
        try:
            done = promote(output, run_id)
        except (PublishConflict, FileNotFoundError, OSError) as exc:
            _fail(exc)
        console.print(f"published {done}")
