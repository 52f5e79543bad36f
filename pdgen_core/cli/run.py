"""``pdgen validate|run|refresh|synth-catalog``: the generation commands. Each parses its input,
calls the library, exits; exit codes come from ``pdgen_core.errors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pdgen_core.cli.app import app, console, err
from pdgen_core.errors import INPUT_ERROR, BelowFloor, StageError, exit_code
from pdgen_core.spec import JobSpec, SpecError, load_spec


def _load(spec: Path, overrides: list[str] | None) -> JobSpec:
    try:
        return load_spec(spec, overrides)
    except SpecError as exc:
        # Markup off: a YAML error quotes the file ("tasks: [description"), and rich would take
        # its brackets for markup tags and drop them.
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(INPUT_ERROR) from None


def data_problems(s: JobSpec) -> list[str]:
    """Problems with the data a spec points at (catalog columns, model), without running."""
    from pdgen_core.models.resolve import ModelError, resolve_model
    from pdgen_core.context_from_spec import wanted_fields
    from pdgen_core.stages.read import CatalogError, column_plan

    out = []
    try:
        column_plan(s.catalog, wanted_fields(s))
    except (CatalogError, OSError, ValueError) as exc:
        out.append(f"catalog: {exc}")
    if s.model.source != "pdgen-tiny":
        try:
            resolve_model(s.model.source)
        except (ModelError, OSError) as exc:
            out.append(f"model.source: {exc}")
    return out


@app.command()
def validate(spec: Path, check_data: bool = typer.Option(True, help="Also open the catalog and model.")):
    """Check a job spec; print every problem at once (field, value, fix)."""
    s = _load(spec, None)
    problems = data_problems(s) if check_data else []
    if problems:
        err.print(f"{spec}: {len(problems)} problem(s)", highlight=False)
        for p in problems:
            err.print(f"  - {p}", highlight=False, markup=False)
        raise typer.Exit(INPUT_ERROR)
    console.print(f"{spec}: ok ({s.name}: tasks {s.tasks}, locales {s.locales}, mode {s.mode})")


def summary_table(record: dict) -> Table:
    t = Table(title=f"run {record['run_id']} ({record['status']})")
    for col in ("task", "accepted", "rejected", "unchanged", "reject reasons"):
        t.add_column(col)
    c = record["counts"]
    for task, v in c["by_task"].items():
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(c["rejects_by_reason"].get(task, {}).items()))
        t.add_row(task, str(v["accepted"]), str(v["rejected"] + c["invalid"]), str(v["unchanged"]), reasons or "-")
    return t


def feed_note(record: dict) -> str:
    """What a changes feed named that the run could not regenerate, or "" (the usual case)."""
    c = record["counts"]
    unknown, past = c.get("feed_unknown_skus", 0), c.get("feed_beyond_limit", 0)
    parts = ([f"{unknown} not in the catalog"] if unknown else []) + (
        [f"{past} beyond catalog.limit ({record['spec']['catalog'].get('limit')})"] if past else [])
    return "feed skus skipped: " + ", ".join(parts) if parts else ""


def print_summary(record: dict) -> None:
    c, tm = record["counts"], record["timing"]
    console.print(summary_table(record))
    console.print(
        f"rows read {c['read']} = valid {c['valid']} + invalid {c['invalid']}; "
        f"tokens in {record['tokens']['in']}, out {record['tokens']['out']}; "
        f"{tm['output_tokens_per_s']:.0f} output tokens/s; wall {tm['wall_s']:.1f}s",
        soft_wrap=True,  # one line at any width: a scheduler's log greps it
    )
    if feed_note(record):
        console.print(feed_note(record), highlight=False)


def _resume_hint(exc: BaseException, command: str) -> str:
    run_id = getattr(exc, "pdgen_run_id", None)
    if not run_id:
        return ""
    return (f"\nWhat run {run_id} staged is kept; once this is fixed, finish it with "
            f"`pdgen {command} SPEC --resume {run_id}` (it commits exactly once).")


def _run(spec: JobSpec, run_id: Optional[str], resume: bool = False, changes: Optional[str] = None,
         command: str = "run") -> dict:
    from pdgen_core.pipeline import run_job

    try:
        return run_job(spec, run_id, resume=resume, changes=changes)
    except Exception as exc:
        code = exit_code(exc)
        if code is None:  # a bug: its traceback is the message
            raise
        # Storage and stage failures leave staged work to resume; wrong input is fixed and re-run.
        hint = _resume_hint(exc, command) if isinstance(exc, (OSError, StageError)) else ""
        err.print(_failure(exc) + hint, markup=False, highlight=False)
        raise typer.Exit(code) from None


def _failure(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return (f"error: storage: {exc}\nCheck output.uri, the bucket, and AWS_* credentials in the "
                "environment.")
    return f"error: {exc}"


@app.command()
def run(spec: Path, set_: list[str] = typer.Option([], "--set", help="Override a field: a.b=c"),
        run_id: Optional[str] = typer.Option(None, help="Run id (default: time + random)"),
        resume: Optional[str] = typer.Option(None, help="Resume the crashed run RUN_ID")):
    """Run a job here (in-process Ray, or the cluster at RAY_ADDRESS)."""
    s = _load(spec, set_)
    record = _run(s, resume or run_id, resume=bool(resume))
    print_summary(record)
    exit_if_held(record, s.output.uri)


def exit_if_held(record: dict, output_uri: str) -> None:
    """A run below ``guardrails.min_accept_rate`` is committed as staged: say so, and exit
    non-zero (``errors.BelowFloor``) so that a scheduler notices. A run staged as its spec asked
    gets the promote command, on stderr."""
    from pdgen_core.run_record import floor_message

    held = (record.get("publish") or {}).get("held_by")
    if held == "min_accept_rate":
        err.print(floor_message(record, output_uri), markup=False, highlight=False)
        raise typer.Exit(BelowFloor.exit_code)
    if held == "staged":
        err.print(f"staged, not published: `pdgen promote {record['run_id']} --output {output_uri}` "
                  "publishes it", markup=False, highlight=False)


def one_line(record: dict) -> str:
    c = record["counts"]
    parts = [f"{t}: {v['accepted']} regenerated, {v['rejected']} rejected, {v['unchanged']} unchanged"
             for t, v in c["by_task"].items()]
    note = feed_note(record)
    return (f"run {record['run_id']}: " + "; ".join(parts) + f"; deleted {sum(c['deleted'].values())}"
            + (f"; {note}" if note else ""))


@app.command()
def refresh(spec: Path, changes: Optional[str] = typer.Option(
                None, help="Parquet changes feed (sku + changed fields): only those skus"),
            set_: list[str] = typer.Option([], "--set", help="Override a field: a.b=c"),
            resume: Optional[str] = typer.Option(None, help="Resume the crashed run RUN_ID")):
    """Incremental run for schedulers: regenerate what changed; exit 0 when nothing to do."""
    s = _load(spec, [*set_, "mode=incremental"])
    record = _run(s, resume, resume=bool(resume), changes=changes, command="refresh")
    generated = sum(v["accepted"] + v["rejected"] for v in record["counts"]["by_task"].values())
    # soft_wrap: one line however long (a scheduler greps it), not wrapped at the console width
    console.print(("nothing to do; " if generated == 0 else "") + one_line(record), highlight=False,
                  soft_wrap=True)
    exit_if_held(record, s.output.uri)


@app.command("synth-catalog")
def synth_catalog(rows: int = typer.Option(1000, min=0), out: str = typer.Option(...),
                  files: int = typer.Option(4, min=1), bad_rows: int = typer.Option(0, min=0),
                  seed: int = 0):
    """Write a synthetic catalog (Parquet files, local or s3://)."""
    from pdgen_core.synth import write_catalog

    paths = write_catalog(out, rows, files=files, seed=seed, bad_rows=bad_rows)
    console.print(f"wrote {rows + bad_rows} rows in {len(paths)} file(s) under {out}")
