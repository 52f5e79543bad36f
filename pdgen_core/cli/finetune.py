"""``pdgen finetune SPEC`` and ``pdgen eval SPEC`` (``pdgen_core.finetune``); ``register(app)`` adds them."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime, timezone
from typing import Optional

import typer

from pdgen_core.errors import exit_code
from pdgen_core.spec import SpecError


def _fail(spec: str, exc: Exception) -> None:
    """Exit as ``pdgen_core.errors.exit_code`` says (2: the spec, data or model); a bug raises."""
    code = exit_code(exc)
    if code is None:
        raise exc
    typer.echo(str(exc) if isinstance(exc, SpecError) else f"{spec}: {exc}", err=True)
    raise typer.Exit(code) from None


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

        try:
            summary = run_finetune(load_finetune_spec(spec, set_ or []), register=not no_register)
        except Exception as exc:
            _fail(spec, exc)
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

        try:
            s = load_finetune_spec(spec, set_ or [])
            report = evaluate_spec(s, adapter=adapter, limit=limit or None, max_new_tokens=max_new_tokens,
                                   engine=engine, repetition_penalty=repetition_penalty,
                                   no_repeat_ngram_size=no_repeat_ngram, split=split,
                                   also_models=also_model or (), guard_retry=guard_retry)
        except Exception as exc:
            _fail(spec, exc)
        typer.echo(report["table"])
        report["command"] = shlex.join(["pdgen", *sys.argv[1:]])
        report["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if json_out:
            with open(json_out, "w") as f:
                json.dump(report, f, indent=2, default=str)
