"""The run context: everything a worker needs to plan, prompt and guard, in one picklable, frozen
object built once on the driver (``context_from_spec.build_context``).

Its own module, under the stages that read it and over nothing but the task registry and the
spec's defaults, so that any stage may import it. The guard settings are typed and frozen
(``GuardSettings``), not a dict whose defaults each reader repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pdgen_core import fingerprint as fp
from pdgen_core.spec import GuardrailSpec
from pdgen_core.tasks import TASKS

_GUARD_DEFAULTS = GuardrailSpec()


@dataclass(frozen=True)
class GuardSettings:
    """The spec's ``guardrails`` as the checks get them, plus the catalog's brands. Defaults are
    the spec's own (one place: ``spec.GuardrailSpec``)."""

    known_brands: frozenset[str] = frozenset()    # every brand in the catalog ("no other brand named")
    banned_terms: tuple[str, ...] = tuple(_GUARD_DEFAULTS.banned_terms)
    url_allowlist: tuple[str, ...] = tuple(_GUARD_DEFAULTS.url_allowlist)
    min_chars: int = _GUARD_DEFAULTS.min_chars
    max_chars: int = _GUARD_DEFAULTS.max_chars

    @classmethod
    def from_spec(cls, g: GuardrailSpec, known_brands: frozenset[str] = frozenset()) -> GuardSettings:
        return cls(known_brands=frozenset(known_brands), banned_terms=tuple(g.banned_terms),
                   url_allowlist=tuple(g.url_allowlist), min_chars=g.min_chars, max_chars=g.max_chars)


@dataclass(frozen=True)
class RunContext:
    run_id: str
    tasks: tuple[str, ...]
    locales: tuple[str, ...]
    currency: str
    model: str                                   # model identity (name@revision-or-hash)
    adapters: dict[str, str] = field(default_factory=dict)       # task -> adapter identity
    sampling: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> params (no seed)
    base_seed: int = 0
    retry_sampling: dict[str, Any] = field(default_factory=dict)  # a guard retry's changes (not the seed)
    retry_in_hash: bool = False                  # the spec sets sampling.retry: part of the fingerprint
    guardrails_version: str = "1"
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)  # task -> variants
    guard: GuardSettings = field(default_factory=lambda: GuardSettings())  # the spec's guardrails
    max_attempts: int = 2
    min_reviews: int = 3
    prompt_format: str = "completion"            # chat | completion (resolved from model.prompt_format)
    model_path: str = ""                         # the node-cache folder: its tokenizer renders chat prompts
    templates: dict[str, str] = field(default_factory=dict)     # task -> template id (lineage)
    zero_shot: frozenset[str] = frozenset()      # adapter tasks trained without the worked examples

    def template(self, task: str) -> str:
        return self.templates.get(task) or TASKS[task].template_id

    def sampling_hash(self, task: str) -> str:
        # The default retry settings stay out, so fingerprints made before sampling.retry existed
        # still match; a spec that sets them explicitly has them in its fingerprints.
        extra = {"retry": self.retry_sampling} if self.retry_in_hash else {}
        return fp.sampling_hash({**self.sampling[task], "base_seed": self.base_seed, **extra})

    def task_locales(self, task: str) -> tuple[str, ...]:
        return tuple(loc for loc in self.locales if loc in TASKS[task].locales)
