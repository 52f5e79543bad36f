"""Typer commands ``pdgen finetune SPEC`` and ``pdgen eval SPEC``; ``register(app)`` adds them."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime, timezone
from typing import Optional

import typer

# Exit codes as in pdgen's CLI: 0 ok, 1 the job failed, 2 the input (spec, data, model) is wrong.
INPUT_ERROR = 2


def _input_errors() -> tuple[type[BaseException], ...]:
    from pdgen_core.finetune.registry import AdapterNotFound
    from pdgen_core.models.resolve import ModelError

    return (ValueError, FileNotFoundError, ModelError, AdapterNotFound)


def register(app: typer.Typer) -> None:
    """Add ``finetune`` and ``eval`` to the main ``pdgen`` Typer app."""

    @app.command("finetune")
    def finetune_cmd(
        spec: str = typer.Argument(..., help="Fine-tune YAML (see pdgen_core/configs/finetune-*.yaml)."),
        set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a field: --set train.max_steps=20"),
        no_register: bool = typer.Option(False, "--no-register", help="Train only; publish nothing."),
    ) -> None:
        """Train an adapter (or a from-scratch tiny model) on Ray Train, evaluate it each epoch and
        publish the best checkpoint to <output>/adapters/<task>/<version>/. Re-running the same
        `name` resumes from its latest checkpoint."""
        from pdgen_core.finetune import load_finetune_spec, run_finetune
        from pdgen_core.spec import SpecError

        try:
            s = load_finetune_spec(spec, set_ or [])
        except SpecError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(INPUT_ERROR) from None
        try:
            summary = run_finetune(s, register=not no_register)
        except _input_errors() as exc:
            typer.echo(f"{spec}: {exc}", err=True)
            raise typer.Exit(INPUT_ERROR) from None
        typer.echo(json.dumps(summary, indent=2, default=str))

    @app.command("eval")
    def eval_cmd(
        spec: str = typer.Argument(..., help="The fine-tune YAML whose adapter and data to evaluate."),
        adapter: str = typer.Option("latest", help="Registry version to evaluate: latest or a number."),
        limit: int = typer.Option(200, help="Held-out rows to generate for (0 = all)."),
        max_new_tokens: int = typer.Option(128, help="Generation budget per row."),
        engine: str = typer.Option("vllm", help="vllm (preferred) or hf."),
        repetition_penalty: float = typer.Option(1.0, "--repetition-penalty",
                                                 help="Same for both models (1.0 = off; vLLM's and HF's)."),
        no_repeat_ngram: int = typer.Option(0, "--no-repeat-ngram",
                                            help="Ban repeating any n-gram of this size, both models (hf only)."),
        split: str = typer.Option("test", help="test (report) or val (choose decoding settings on it)."),
        also_model: Optional[list[str]] = typer.Option(
            None, "--also-model", help="Add an untuned row for this model (pdgen-tiny, a folder, s3://); repeatable."),
        guard_retry: Optional[float] = typer.Option(
            None, "--guard-retry",
            help="Score what `pdgen run` commits with guardrails.max_attempts 2: texts the guardrails reject "
                 "are generated again with this repetition penalty (sampling.retry's default: 1.2)."),
        json_out: Optional[str] = typer.Option(None, "--json", help="Also write the report to this file."),
        set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a spec field."),
    ) -> None:
        """Fine-tuned vs untuned vs template baseline on the held-out split: ROUGE-L, chrF, BLEU,
        guardrail pass rate."""
        from pdgen_core.finetune import evaluate_spec, load_finetune_spec
        from pdgen_core.spec import SpecError

        try:
            s = load_finetune_spec(spec, set_ or [])
        except SpecError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(INPUT_ERROR) from None
        try:
            report = evaluate_spec(s, adapter=adapter, limit=limit or None, max_new_tokens=max_new_tokens,
                                   engine=engine, repetition_penalty=repetition_penalty,
                                   no_repeat_ngram_size=no_repeat_ngram, split=split,
                                   also_models=also_model or (), guard_retry=guard_retry)
        except _input_errors() as exc:
            typer.echo(f"{spec}: {exc}", err=True)
            raise typer.Exit(INPUT_ERROR) from None
        typer.echo(report["table"])
        report["command"] = shlex.join(["pdgen", *sys.argv[1:]])
        report["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if json_out:
            with open(json_out, "w") as f:
                json.dump(report, f, indent=2, default=str)
