"""Preflight: everything that can stop a generation run before any work, each with its fix.

A wrong credential, a missing bucket, a catalog column that is not there, a model that does not
exist or cannot serve the spec's context or locales, a Ray node without the S3 variables: these
fail here, in seconds, not inside an engine actor minutes later.
"""

from __future__ import annotations

import json
from pathlib import Path

from pdgen_core import migrate, storage
from pdgen_core.errors import InputError
from pdgen_core.log import get_logger
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
    check_nodes(spec)
    plan = read.column_plan(spec.catalog, wanted_fields(spec))
    storage.write_bytes(layout.write_probe, b"ok")  # wrong credentials or a missing bucket fail here
    layout.write_probe.fs.delete_file(layout.write_probe.path)
    migrate.check_output(spec.output.uri, list(spec.tasks))  # old-layout staged runs: migrate first
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


# What a node must have to reach S3, by what the driver has: each group is one setting of
# ``pdgen_core.settings.Settings``, satisfied by any of its variables (the first is the one to set).
S3_ENDPOINT_VARS = ("PDGEN_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
S3_KEY_VARS = ("AWS_ACCESS_KEY_ID", "PDGEN_AWS_ACCESS_KEY_ID")
S3_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "PDGEN_AWS_SECRET_ACCESS_KEY")
# Never in a job's runtime env: the dashboard and the job's logs show it.
S3_SECRET_NAMES = (*S3_KEY_VARS, *S3_SECRET_VARS, "AWS_SESSION_TOKEN", "PDGEN_AWS_SESSION_TOKEN")
NODE_CHECK_S = 180  # a node whose worker cannot start in this long fails the check


def needed_s3_vars() -> list[tuple[str, ...]]:
    """The variable groups every node needs: those this driver reads its S3 settings from
    (an endpoint when it has one, keys when it has them; nothing for AWS with an instance role)."""
    from pdgen_core.settings import get_settings

    s = get_settings()
    groups = [S3_ENDPOINT_VARS] if s.s3_endpoint else []
    if s.access_key_id and s.secret_access_key:
        groups += [S3_KEY_VARS, S3_SECRET_VARS]
    return groups


def missing_here(groups: list[tuple[str, ...]]) -> list[str]:
    """The groups none of whose variables this process has; names only, never a value."""
    import os

    return [g[0] for g in groups if not any(os.environ.get(v) for v in g)]


def _joined_cluster() -> bool:
    """True when the driver joins a Ray cluster (``RAY_ADDRESS``, a Jobs API driver, or an
    initialized Ray of more than one node). In-process Ray's workers inherit this process's
    environment: nothing to check there."""
    import sys

    from pdgen_core.settings import get_settings

    if get_settings().ray_address not in (None, "", "local"):
        return True
    ray = sys.modules.get("ray")
    return bool(ray and ray.is_initialized() and sum(1 for n in ray.nodes() if n.get("Alive")) > 1)


def check_nodes(spec: JobSpec) -> None:
    """A job on S3 that joins a cluster checks, on every alive node, that the node's own
    environment holds the S3 variables the driver uses: workers read S3 with their node's
    settings (on KubeRay, env from a Secret), never with the driver's, and a worker without them
    would fail minutes later with an access error in an engine's batch. Also refuses credentials
    in the job's runtime env, which the dashboard shows. Costs one zero-CPU task per node."""
    if not any(str(u).startswith("s3://") for u in (spec.catalog.uri, spec.output.uri)):
        return
    if not _joined_cluster():
        return
    import ray

    from pdgen_core.ray_session import init_ray, on_each_node

    init_ray()
    shown = sorted(k for k in ((ray.get_runtime_context().runtime_env or {}).get("env_vars") or {})
                   if k in S3_SECRET_NAMES)
    if shown:
        raise InputError(
            f"the job's runtime env carries {', '.join(shown)}: the Ray dashboard and the job's logs "
            "show a runtime env. Remove them from runtime_env.env_vars (pdgen submit --env) and set "
            "them in each node's environment instead (on KubeRay: the worker groups' env, from a Secret)")
    groups = needed_s3_vars()
    if not groups:
        return
    try:
        missing = {n: m for n, m in on_each_node(missing_here, groups, timeout_s=NODE_CHECK_S).items() if m}
    except TimeoutError as exc:
        raise InputError(f"the S3 variables of every Ray node could not be checked: {exc}") from None
    get_logger().info("preflight.nodes", checked=len(groups), nodes_missing=len(missing))
    if missing:
        names = sorted({v for m in missing.values() for v in m})
        where = "; ".join(f"node {n} lacks {', '.join(m)}" for n, m in sorted(missing.items()))
        alias = {g[0]: g for g in groups}
        how = ", ".join(f"{v}" + (f" (or {' / '.join(alias[v][1:])})" if len(alias[v]) > 1 else "")
                        for v in names)
        raise InputError(
            f"{len(missing)} Ray node(s) cannot reach S3, so the job stopped before any work: {where}. "
            f"Set {how} in the environment of every node's `ray start` (on KubeRay: the worker "
            "group's env, from a Secret); not in the job's runtime env, which the dashboard shows")


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
