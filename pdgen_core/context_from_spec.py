"""Spec to run context: what the driver works out once from a job spec (sampling per task and
prompt format, the guard's settings, the fingerprint's guard version) so that every worker gets
one frozen ``RunContext``.

Above the stages (it reads ``stages.prompt``'s retry-rules version), under the pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pdgen_core import fingerprint as fp
from pdgen_core.guardrails import GUARDRAIL_SET_VERSION
from pdgen_core.models import chat
from pdgen_core.run_context import GuardSettings, RunContext
from pdgen_core.spec import JobSpec
from pdgen_core.stages.prompt import RETRY_RULES_VERSION
from pdgen_core.tasks import TASKS


def sampling_for(spec: JobSpec, task: str, prompt_format: str = "completion") -> dict[str, Any]:
    """The task's sampling defaults for the prompt format, overridden by the fields the spec sets
    explicitly. A chat model stops at its own end-of-turn token (its generation config); the
    completion templates' section marker (``###``) is a stop only there."""
    t = TASKS[task]
    s = spec.sampling
    explicit = {k: getattr(s, k) for k in s.model_fields_set if k not in ("seed", "retry")}
    base = {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens}
    defaults = t.chat_sampling if prompt_format == "chat" else t.sampling
    out = {**base, **defaults, **explicit}
    if out.get("repetition_penalty") == 1.0:  # off: keep the fingerprints of specs that never set it
        del out["repetition_penalty"]
    if t.stop and prompt_format != "chat":
        out["stop"] = list(t.stop)
    return out


def retry_sampling_for(spec: JobSpec) -> dict[str, Any]:
    """What a guard retry changes in a row's sampling besides its seed (``sampling.retry``)."""
    r = spec.sampling.retry
    out: dict[str, Any] = {"repetition_penalty": r.repetition_penalty}
    if r.temperature is not None:
        out["temperature"] = r.temperature
    return out


def build_context(spec: JobSpec, run_id: str, model_id: str, known_brands: frozenset[str],
                  adapters: dict[str, str] | None = None, model_path: Path | None = None,
                  zero_shot: frozenset[str] = frozenset()) -> RunContext:
    """The one ``RunContext`` of a run. Without ``model_path`` (plan-only callers, tests) the
    prompt format is ``completion`` and no end-of-turn tokens are known."""
    g = spec.guardrails
    fmt = chat.prompt_format(spec.model.prompt_format, model_path) if model_path else "completion"
    tpl = chat.chat_template(model_path) if fmt == "chat" else ""
    return RunContext(
        run_id=run_id, tasks=tuple(spec.tasks), locales=tuple(spec.locales),
        currency=spec.catalog.currency, model=model_id, adapters=adapters or {},
        prompt_format=fmt, model_path=str(model_path or ""), zero_shot=zero_shot,
        templates={t: TASKS[t].template_for(fmt, tpl) for t in spec.tasks},
        sampling={t: sampling_for(spec, t, fmt) for t in spec.tasks}, base_seed=spec.sampling.seed,
        retry_sampling=retry_sampling_for(spec),
        retry_in_hash="retry" in spec.sampling.model_fields_set,
        guardrails_version=guardrails_version(spec),
        variants={t: TASKS[t].variants_for(spec) for t in spec.tasks},
        guard=GuardSettings.from_spec(g, known_brands),
        max_attempts=g.max_attempts,
        min_reviews=spec.reviews.min_reviews if spec.reviews else 3,
    )


def guardrails_version(spec: JobSpec) -> str:
    """What the fingerprints know of the guard: the check set's version and the retry rules'
    (``GUARDRAIL_SET_VERSION``, ``prompt.RETRY_RULES_VERSION``), plus the spec's guardrail
    settings that differ from their defaults (not ``min_accept_rate``). Loosening ``max_chars`` re-generates what it
    rejected; a new banned term re-checks what was accepted. Settings left at their defaults stay
    out, so that fingerprints made before the settings were hashed remain valid."""
    version = f"{GUARDRAIL_SET_VERSION}.r{RETRY_RULES_VERSION}"
    # The accept-rate floor judges a run, not a text: it stays out.
    custom = spec.guardrails.model_dump(mode="json", exclude_defaults=True, exclude={"min_accept_rate"})
    return f"{version}+{fp.digest(custom)[:12]}" if custom else version


def wanted_fields(spec: JobSpec) -> set[str]:
    """The catalog fields the spec's tasks read (the reader's column plan)."""
    return {f for t in spec.tasks for f in TASKS[t].fields if f not in ("variant",)}
