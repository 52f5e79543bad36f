"""``pdgen model upload``: put a resolved model, or a fine-tuned adapter, on S3 for a cluster
(``pdgen_core.models.upload``).

    pdgen model upload smollm2-135m-instruct s3://pdgen-models/smollm2-135m-instruct/
    pdgen model upload s3://content/adapters/description/3 s3://pdgen-content/

The S3 endpoint and credentials come from the environment, as for every other command.
"""

from __future__ import annotations

import typer

from pdgen_core.errors import exit_code


def register(app: typer.Typer) -> None:
    """Add the ``model`` group (``model upload``) to the pdgen command line."""
    group = typer.Typer(no_args_is_help=True, help="Models for a cluster: upload to S3.")
    app.add_typer(group, name="model")

    @group.command("upload")
    def upload_cmd(
        source: str = typer.Argument(..., help="smollm2-135m-instruct, pdgen-tiny, an HF folder, a .gguf "
                                     "file, or a registry version <output>/adapters/<task>/<n>."),
        dest: str = typer.Argument(..., help="s3://bucket/prefix/ for a model; for an adapter, the output "
                                   "root whose adapters/ registry receives it."),
    ) -> None:
        """Upload a model folder as resolved here (SmolLM2 dequantized from its wheel, once) to an S3
        prefix that a spec names as `model.source`, or copy an adapter version into another registry.
        Prints the spec line that uses it."""
        from pdgen_core.models import upload

        try:
            done = upload.upload(source, dest)
        except Exception as exc:
            code = exit_code(exc)
            if code is None:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code) from None
        typer.echo(upload.describe(done))
