"""The ``pdgen`` Typer app and its consoles, apart from the commands so that every command module
can import them without importing the package that assembles them."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Batch e-commerce content generation on Ray + vLLM, with Delta Lake outputs.")


@app.callback()
def _options(verbose: bool = typer.Option(
        False, "--verbose", "-v",
        help="Ray, Ray Data, vLLM and library output on stderr; otherwise it goes to a log file "
             "(<cache>/logs/) and Ray's session logs, and stdout holds the summary only.")):
    if verbose:  # settings re-read PDGEN_* on every get_settings()
        import os

        os.environ["PDGEN_VERBOSE"] = "1"
    from pdgen_core.log import allow_native_redirect

    allow_native_redirect()   # Ray's C++ lines go to the library log once Ray starts
console = Console(stderr=False)
# Errors are not wrapped: a wrapped line can split a command to copy (`--resume RUN_ID`).
err = Console(stderr=True, soft_wrap=True)
