"""``pdgen service start|status|stop``: the long-lived generation service (``pdgen_core.service``)
on the Ray cluster at ``RAY_ADDRESS``.

    pdgen service start job.yaml          # the spec's model and engine settings, LoRA on
    pdgen service status                  # up or not, its model, context, batches served
    pdgen service stop

While it is up, every job on that cluster whose model and settings it serves hands it its batches
(no engine start); the others start their own engine actors, and say why in their log.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pdgen_core.cli.app import console, err
from pdgen_core.errors import INPUT_ERROR, exit_code


def _connect() -> None:
    """Join the cluster at RAY_ADDRESS; the service outlives this command, so an in-process Ray
    (which ends with it) is refused."""
    from pdgen_core.ray_session import init_ray
    from pdgen_core.settings import get_settings

    if not get_settings().ray_address or get_settings().ray_address == "local":
        err.print("error: the generation service runs on a Ray cluster that outlives this command; "
                  "set RAY_ADDRESS (make local-ray prints it, e.g. RAY_ADDRESS=127.0.0.1:6379)",
                  markup=False, highlight=False)
        raise typer.Exit(INPUT_ERROR)
    init_ray()


def register(app: typer.Typer) -> None:
    """Add the ``service`` group to the pdgen command line."""
    group = typer.Typer(no_args_is_help=True,
                        help="The generation service: one vLLM engine per replica that outlives jobs.")
    app.add_typer(group, name="service")

    @group.command("start")
    def start_cmd(spec: Path = typer.Argument(..., help="A job spec: its model and resources."),
                  set_: list[str] = typer.Option([], "--set", help="Override a field: a.b=c")) -> None:
        """Deploy the service for the spec's model (replicas, CPUs or GPUs from its resources) and
        wait until every replica's engine is up."""
        from pdgen_core import service
        from pdgen_core.cli.run import _load
        from pdgen_core.models.resolve import model_identity, resolve_model

        s = _load(spec, set_)
        try:
            path = resolve_model(s.model.source)
            _connect()
            st = service.start(s, path, model_identity(path, s.model.revision))
        except typer.Exit:
            raise
        except Exception as exc:
            code = exit_code(exc)
            if code is None:
                raise
            err.print(f"error: {exc}", markup=False, highlight=False)
            raise typer.Exit(code) from None
        console.print(_describe(st), markup=False, highlight=False, soft_wrap=True)

    @group.command("status")
    def status_cmd(as_json: bool = typer.Option(False, "--json", help="The description as JSON.")) -> None:
        """Whether the service is up, and what it serves. Exit 0 when it is RUNNING, 1 otherwise."""
        from pdgen_core import service

        _connect()
        st = service.status()
        console.print(json.dumps(st, indent=2) if as_json else _describe(st), markup=False, highlight=False,
                      soft_wrap=True)
        raise typer.Exit(0 if st["status"] == "RUNNING" else 1)

    @group.command("stop")
    def stop_cmd() -> None:
        """Delete the service; jobs start their own engine actors again."""
        from pdgen_core import service

        _connect()
        console.print("stopped the generation service" if service.stop() else "no generation service was running")


def _describe(st: dict) -> str:
    if st["status"] != "RUNNING":
        return f"generation service: {st['status']}" + (f" ({st['message']})" if st.get("message") else "")
    return (f"generation service: RUNNING, {st.get('replicas')} replica(s) of {st.get('model')} "
            f"(context {st.get('max_model_len')}, LoRA rank <= {st.get('max_lora_rank')}), "
            f"since {st.get('started_at')}; {st.get('batches', 0)} batches, {st.get('rows', 0)} rows served")
