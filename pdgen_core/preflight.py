"""Preflight: everything that can stop a generation run before any work, each with its fix.

A wrong credential, a missing bucket, a catalog column that is not there, a model that does not
exist or cannot serve the spec's context or locales: these fail here, in seconds, not inside an
engine actor minutes later.
"""

from __future__ import annotations

import json
from pathlib import Path

from pdgen_core import storage
from pdgen_core.context_from_spec import wanted_fields
from pdgen_core.models import chat
from pdgen_core.models.resolve import LANGUAGES, ModelError, resolve_model
from pdgen_core.spec import JobSpec
from pdgen_core.staging import RunLayout
from pdgen_core.stages import read


def preflight(spec: JobSpec, layout: RunLayout) -> tuple[dict[str, str], Path]:
    """The catalog's column plan and the model's local folder, once every check passed."""
    check_languages(spec)
    check_endpoint(spec)
    plan = read.column_plan(spec.catalog, wanted_fields(spec))
    storage.write_bytes(layout.write_probe, b"ok")  # wrong credentials or a missing bucket fail here
    layout.write_probe.fs.delete_file(layout.write_probe.path)
    model_path = resolve_model(spec.model.source)
    check_context(spec, model_path)
    try:
        chat.prompt_format(spec.model.prompt_format, model_path)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    return plan, model_path


def check_endpoint(spec: JobSpec) -> None:
    """A job on S3 with an endpoint that refuses connections stops at once, not after a minute of
    the SDK's retries (``storage.check_endpoint``)."""
    if any(str(u).startswith("s3://") for u in (spec.catalog.uri, spec.output.uri)):
        storage.check_endpoint()


def check_context(spec: JobSpec, model_path: Path) -> None:
    """model.max_model_len must fit the model: vLLM would refuse it only inside the engine actor."""
    cfg = json.loads((model_path / "config.json").read_text())
    limit = cfg.get("max_position_embeddings")
    if limit and spec.model.max_model_len and spec.model.max_model_len > limit:
        raise ModelError(
            f"model.max_model_len ({spec.model.max_model_len}) is larger than the model's context "
            f"({limit} positions in {model_path / 'config.json'}); set model.max_model_len <= {limit}")


def check_languages(spec: JobSpec) -> None:
    """A registered model that writes only some languages refuses the others before any work."""
    langs = LANGUAGES.get(spec.model.source)
    bad = [loc for loc in spec.locales if langs and loc not in langs]
    if bad:
        raise ModelError(
            f"locales {bad}: model.source {spec.model.source!r} writes only {list(langs)}; remove "
            f"them from `locales`, or run them in a job of their own with a model that writes them "
            "(pdgen-tiny is trained on Chinese catalog text)")
