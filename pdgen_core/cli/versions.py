"""``pdgen versions|show|diff|rollback|promote``: the content tables' versions and the publish gate
(``pdgen_core.versions``). Exit codes come from ``pdgen_core.errors``."""

from __future__ import annotations

import json
from typing import Optional

import typer

from pdgen_core.errors import exit_code


def register(app: typer.Typer) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from pdgen_core import versions as v

    console = Console()

    def _fail(exc: Exception) -> None:
        code = exit_code(exc)
        if code is None:  # a bug: its traceback is the message
            raise exc
        Console(stderr=True, soft_wrap=True).print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(code)

    def _op(r: dict) -> str:
        if r["restores"] is not None:
            return f"restore v{r['restores']}"
        if r["promoted"]:
            return "promote"
        if r.get("created_empty"):
            return "create empty"
        return (r["operation"] or "-").lower()

    def _rows(r: dict) -> str:
        if r["restores"] is not None:
            return "-"
        parts = [f"{sign}{n}" for sign, n in (("+", r["rows_inserted"]), ("~", r["rows_updated"]),
                                              ("-", r["rows_deleted"])) if n]
        return " ".join(parts) or "0"

    def versions_table(output: str, task: str, rows: list[dict]) -> Table:
        """Compact columns (ISO times, one rows column, no borders): it fits 80 columns, and a
        narrower terminal folds cells instead of cutting them."""
        t = Table(title=f"{output} content/{task}", box=box.SIMPLE_HEAD, pad_edge=False)
        t.add_column("v", justify="right", no_wrap=True)
        t.add_column("run", overflow="fold", min_width=8)
        t.add_column("time (UTC)", overflow="fold", min_width=10)
        t.add_column("op", overflow="fold")
        t.add_column("rows", overflow="fold")
        t.add_column("live", no_wrap=True)
        for r in rows:
            t.add_row(str(r["version"]), r["run_id"] or "-", r["time"] or "-", _op(r), _rows(r),
                      "yes" if r["published"] else "")
        return t

    @app.command("versions")
    def versions_cmd(output: str, task: str = typer.Option("description")):
        """List content/<task>'s versions (run, ISO time, rows +added ~updated -deleted); the latest
        is the published one. Staged runs waiting for `pdgen promote` are listed after it."""
        try:
            rows = v.versions(output, task)
            waiting = v.staged_runs(output, task)
        except Exception as exc:
            _fail(exc)
        console.print(versions_table(output, task, rows))
        if waiting:
            console.print(f"staged, not published (`pdgen promote RUN_ID --output {output}`):",
                          markup=False, highlight=False)
            for run_id in waiting:
                console.print(f"  {run_id}", markup=False, highlight=False)

    @app.command("show")
    def show_cmd(output: str, task: str = typer.Option("description"), sku: str = typer.Option(...),
                 version: Optional[int] = typer.Option(None, help="An older version (default: the published one).")):
        """Show a sku's content; a sku without text shows its latest reject and why."""
        try:
            rows, seen = v.show(output, task, sku, version)
            reject = None if rows else v.latest_reject(output, task, sku)
        except Exception as exc:
            _fail(exc)
        console.print(f"content/{task} version {seen}: {len(rows)} row(s) for {sku}", markup=False,
                      highlight=False)
        for r in rows:
            console.print_json(json.dumps(r, default=str))
        if reject is not None:
            at = reject.get("rejected_at")
            when = at.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(at, "strftime") else str(at or "-")
            console.print(
                f"latest reject: {reject['reason']} (stage {reject['stage']}, run {reject['run_id']}, "
                f"{when}, attempts {reject.get('attempts') or '-'})"
                + (f"\n  detail: {reject['detail']}" if reject.get("detail") else ""),
                markup=False, highlight=False)
        elif not rows:
            console.print(f"no reject for {sku} in rejects/{task} either: is the sku in the catalog, "
                          "and the task in the spec?", markup=False, highlight=False)

    def _value(x) -> str:
        s = x if isinstance(x, str) else json.dumps(x, ensure_ascii=False, default=str)
        return s if len(s) <= 60 else s[:57] + "..."

    @app.command("diff")
    def diff_cmd(output: str, task: str = typer.Option("description"),
                 from_: int = typer.Option(..., "--from"), to: int = typer.Option(..., "--to")):
        """Rows added, changed and removed between two versions: for each changed text, the input
        fields that changed. Rows regenerated to the same text are counted, not listed."""
        try:
            d = v.diff(output, task, from_, to)
        except Exception as exc:
            _fail(exc)
        same = f" ({d['same_text']} regenerated to the same text, not listed)" if d["same_text"] else ""
        console.print(f"v{from_} -> v{to}: added {d['added']}, changed {d['changed']}, "
                      f"removed {d['removed']}{same}", markup=False, highlight=False)
        for c in d["samples"]["changed"]:
            sku, locale, variant = c["key"]
            key = f"{sku} [{locale}{', ' + variant if variant else ''}]"
            fields = "; ".join(f"{k} {_value(a)} -> {_value(b)}" for k, (a, b) in c["fields"].items())
            console.print(f"  {key}: {fields or 'inputs not recorded in the older version'}\n"
                          f"    - {c['old']}\n    + {c['new']}", markup=False, highlight=False)

    @app.command("rollback")
    def rollback_cmd(output: str, task: str = typer.Option("description"), to: int = typer.Option(...)):
        """Restore content/<task> to version TO, as a new (published) version."""
        try:
            new = v.rollback(output, task, to)
        except Exception as exc:
            _fail(exc)
        console.print(f"content/{task} is at v{to} already; nothing to restore" if new == to else
                      f"content/{task} restored to v{to} as v{new}; published", highlight=False)

    @app.command("promote")
    def promote_cmd(run_id: str, output: str = typer.Option(..., help="The run's output.uri"),
                    allow_older: bool = typer.Option(
                        False, help="Promote a run older than the published one (newer content is replaced).")):
        """Publish a staged run: its rows become the latest version of each content table."""
        try:
            from pdgen_core import migrate

            done = migrate.promote(output, run_id, allow_older=allow_older)
        except Exception as exc:
            _fail(exc)
        console.print(f"run {run_id} published: " + ", ".join(f"content/{t} v{n}" for t, n in done.items()),
                      markup=False, highlight=False)

    @app.command("migrate")
    def migrate_cmd(output: str, dry_run: bool = typer.Option(False, help="Only list what would move.")):
        """Move runs staged under the old layout (in content/<task>, behind the published pointer)
        into staging tables, and restore each content table to its published version."""
        from pdgen_core import migrate

        try:
            found = migrate.migrate(output, dry_run=dry_run)
        except Exception as exc:
            _fail(exc)
        if not found:
            console.print(f"{output}: nothing to migrate (no run staged under the old layout)", highlight=False, soft_wrap=True)
            return
        for task, f in sorted(found.items()):
            runs = ", ".join(f"{r['run_id']} (v{r['version']})" for r in f["runs"])
            done = ("would move" if dry_run else
                    f"moved to staged/<run>/{task}; content/{task} " + (
                        f"restored to v{f['published']} as v{f['restored_as']}" if f["published"] >= 0
                        else f"emptied as v{f['restored_as']} (nothing was published)"))
            console.print(f"content/{task}: {runs}: {done}", markup=False, highlight=False, soft_wrap=True)
        if not dry_run:
            console.print(f"promote one with `pdgen promote RUN_ID --output {output}`", markup=False, highlight=False, soft_wrap=True)
