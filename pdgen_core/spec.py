"""The job spec: the user-facing contract, a YAML file parsed into strict pydantic models.

Every model forbids unknown keys. ``load_spec`` reports every error at once, each with the field,
the value given and the fix. Environment facts (S3 endpoint, credentials, Ray address) are not
spec fields: see ``pdgen_core.settings``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from pdgen_core.errors import InputError
from pdgen_core.tasks import LOCALES, TASKS

CANONICAL_COLUMNS = (
    "sku", "title", "brand", "price", "description", "category", "color", "gender", "material",
    "attributes",
)
REVIEW_COLUMNS = ("sku", "text", "rating", "title")
SECRET_HINTS = ("secret", "password", "access_key", "token", "credential", "aws_")


# scheme://user:secret@ or scheme://token@; the secret part may hold "/" (AWS secret keys do).
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#@:]*:[^@]*|[^/?#@]*)@")


def _no_credentials(v: str) -> str:
    if _USERINFO.match(v):
        raise ValueError("a URI with user:secret@ is refused: credentials never go in a spec; set "
                         "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or PDGEN_*) in the environment")
    return v


Uri = Annotated[str, AfterValidator(_no_credentials)]


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or "": a typo ("descripton",
    "curency") is the usual cause of an unknown name, and the fix is one word away."""
    by_lower = {str(c).lower(): str(c) for c in choices}  # "EN" and "Description" are typos too
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def _unknown(kind: str, names, choices) -> str:
    """The message for names outside ``choices``: each with its closest match, then the list."""
    parts = [f"{n!r}{did_you_mean(n, choices)}" for n in names]
    return f"unknown {kind} {', '.join(parts)}; available: {sorted(choices)}"


def iso_currency(v: str) -> str:
    """An ISO 4217 code from pycountry's list (maintained with the standard), upper-cased:
    "inr" is INR; "XYZ" (three letters, but no currency) and "rupees" are refused with the fix.
    The code is printed with prices and checked by the price guard, so it must be a real one."""
    import pycountry

    code = str(v).strip().upper()
    if len(code) == 3 and pycountry.currencies.get(alpha_3=code) is not None:
        return code
    by_name = [c.alpha_3 for c in pycountry.currencies if str(v).strip().lower() in c.name.lower()]
    hint = (f" (did you mean {by_name[0]!r}?)" if len(by_name) == 1
            else did_you_mean(code, [c.alpha_3 for c in pycountry.currencies]))
    raise ValueError(f"{v!r} is not an ISO 4217 currency code{hint}; use a three-letter code such "
                     "as USD, EUR or INR")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogSpec(_Strict):
    uri: Uri = Field(description="Parquet file or folder, s3:// or local.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="canonical name -> column in the catalog; unmapped canonical names read the "
        "column of the same name if present.",
    )
    currency: Annotated[str, AfterValidator(iso_currency)] = Field(
        default="USD", description="ISO 4217 code (pycountry's list); lower case is accepted.")
    limit: int | None = Field(default=None, gt=0, description="Read at most this many rows.")

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(CANONICAL_COLUMNS))
        if unknown:
            raise ValueError(_unknown("canonical column(s)", unknown, CANONICAL_COLUMNS)
                             + "; map only these")
        return v


class ReviewsSpec(_Strict):
    uri: Uri = Field(description="Reviews Parquet file or folder (s3:// or local).")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical review column -> the file's own name (sku, text, rating).")
    min_reviews: int = Field(
        default=3, ge=1,
        description="Products with fewer reviews are rejected for review tasks (too_few_reviews).")

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(REVIEW_COLUMNS))
        if unknown:
            raise ValueError(_unknown("review column(s)", unknown, REVIEW_COLUMNS) + "; map only these")
        return v


class ModelSpec(_Strict):
    source: Uri = Field(
        default="smollm2-135m-instruct",
        description="HF folder, s3:// prefix holding one, a .gguf file (local or s3://), or a "
        "registered name: smollm2-135m-instruct (a real instruct model, English) or pdgen-tiny "
        "(the project's own toy model, for fast tests).",
    )
    prompt_format: Literal["auto", "chat", "completion"] = Field(
        default="auto",
        description="chat: each task's system instruction, examples and facts as messages, through "
        "the model's own chat template; completion: the task's plain text template (what pdgen-tiny "
        "was trained on); auto: chat when the tokenizer has a chat template.",
    )
    revision: str | None = Field(default=None, description="Recorded in lineage and fingerprints.")
    adapters: dict[str, Uri] = Field(default_factory=dict, description="task -> adapter uri.")
    max_model_len: int | None = Field(
        default=None, ge=64, le=131072,
        description="Context length the engine serves (prompt + output tokens); default: the "
        "model's own context, at most 2048.")


class RetrySamplingSpec(_Strict):
    """How a guard retry (attempt 2 and later) samples, over the first attempt's settings.

    A new seed alone changes nothing at temperature 0: a greedy first attempt would write the same
    rejected text again. So a retry also penalises repeated tokens (repetition is the reason most
    rejected texts fail), and may sample hotter."""

    repetition_penalty: float = Field(
        default=1.2, gt=0.0, le=2.0,
        description="vLLM's repetition penalty for retries (1.0 = off, >1 discourages repeats).")
    temperature: float | None = Field(
        default=None, ge=0.0, le=2.0, description="Temperature for retries; default: the first attempt's.")


class SamplingSpec(_Strict):
    temperature: float = Field(
        default=0.7, ge=0.0, le=2.0,
        description="Sampling temperature; unless set here, each task's default for the prompt format.")
    top_p: float = Field(default=0.95, gt=0.0, le=1.0,
                         description="Nucleus sampling; unless set here, each task's default.")
    max_tokens: int = Field(default=160, ge=1, le=8192,
                            description="Output tokens per text; unless set here, each task's default.")
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=2.0,
                                      description="vLLM's repetition penalty (1.0 = off).")
    seed: int = Field(default=0, ge=0, description="Base seed; each row derives its own from it.")
    retry: RetrySamplingSpec = Field(default_factory=RetrySamplingSpec,
                                     description="Overrides for guard retries (guardrails.max_attempts > 1).")


class OutputSpec(_Strict):
    uri: Uri = Field(description="Folder (s3:// or local) that holds content/, rejects/ and runs/.")
    publish: Literal["auto", "staged"] = Field(
        default="auto",
        description="auto: a run publishes what it commits; staged: consumers see it only after "
        "`pdgen promote RUN_ID`.",
    )
    max_defect_rate: float | None = Field(
        default=None, gt=0.0, lt=1.0,
        description="`pdgen review`: publish every row of a staged run when its reviewed sample "
        "bounds the defect rate (rejected / reviewed, 95% upper bound) under this; otherwise, or "
        "unset, only the approved rows are published.",
    )


class ResourcesSpec(_Strict):
    replicas: int = Field(default=1, ge=1, le=1024, description="vLLM engine replicas (actors).")
    batch_size: int = Field(default=64, ge=1, le=65536, description="Rows per engine batch.")
    gpus_per_replica: int = Field(default=0, ge=0, le=16, description="0 runs vLLM on the CPU.")
    cpus_per_replica: int = Field(default=1, ge=1, le=256, description="CPUs Ray reserves per engine actor.")
    engine_threads: int | None = Field(
        default=None, ge=1, le=1024,
        description="Torch threads of a CPU engine (gpus_per_replica 0); default cpus_per_replica. "
        "Raise it to let the engine use idle cores beyond its reservation.",
    )
    max_concurrent_batches: int = Field(
        default=4, ge=1, le=64,
        description="Batches an engine actor takes per call (batch_size x max_concurrent_batches "
        "rows, all queued in its engine at once); the engine runs half of them at a time (at most "
        "256), so finished sequences are replaced at once.",
    )
    memory_fraction: float | None = Field(
        default=None, gt=0.0, le=0.98,
        description="vLLM gpu_memory_utilization: share of GPU memory, or of host memory on CPU "
        "(the KV cache). Default 0.9 on GPUs, 0.1 on the CPU.",
    )
    max_lora_rank: int = Field(default=16, ge=1, le=512,
                               description="Largest LoRA rank the engine serves (>= each adapter's rank).")
    max_engine_restarts: int = Field(
        default=3, ge=0, le=100,
        description="Engine actors that die are replaced this many times; then the job fails.",
    )


class GuardrailSpec(_Strict):
    max_attempts: int = Field(
        default=2, ge=1, le=10,
        description="Generations per item: a text the guard rejects is written again with a new "
        "seed (and sampling.retry's changes) until this many attempts; then it is a reject.")
    min_chars: int = Field(default=20, ge=0, description="Shorter texts are rejected (too_short).")
    max_chars: int = Field(default=2000, ge=1, description="Longer texts are rejected (too_long).")
    banned_terms: list[str] = Field(
        default_factory=list,
        description="Terms no text may contain, matched case-insensitively on word boundaries "
        "(banned_term).")
    url_allowlist: list[str] = Field(
        default_factory=list,
        description="Domains a text may link to (their subdomains too); any other URL is "
        "rejected (pii_url). Empty: no link passes (a catalog brand that looks like a domain is not a link).")
    min_accept_rate: float | dict[str, float] | None = Field(
        default=None,
        description="A floor on each task's accept rate (accepted / (accepted + rejected) of the "
        "items the run generated): a number for every task, or task -> number, each in [0, 1]. A "
        "run with a task below it is committed as staged, not published, and exits 1 with its "
        "summary; `pdgen promote RUN_ID` publishes it anyway. Not in fingerprints: it judges a "
        "run, not a text.")

    @field_validator("min_accept_rate", mode="before")
    @classmethod
    def _floor(cls, v):
        """One message for any wrong shape (pydantic's union would report each branch)."""
        def rate(x) -> float:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x <= 1.0:
                raise ValueError("expected a number in [0, 1] (0.3 = 30% accepted), or task -> number")
            return float(x)
        if v is None:
            return v
        if isinstance(v, dict):
            unknown = sorted((k for k in v if k not in TASKS), key=str)
            if unknown:
                raise ValueError(_unknown("task(s)", unknown, TASKS))
            return {k: rate(x) for k, x in v.items()}
        return rate(v)


class JobSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="Slug naming the job.")
    catalog: CatalogSpec = Field(description="The products to write for.")
    reviews: ReviewsSpec | None = Field(default=None, description="Product reviews; needed by review_digest.")
    tasks: list[str] = Field(default_factory=lambda: ["description"], min_length=1,
                             description="Content tasks to run, each once (see pdgen_core/tasks/).")
    locales: list[str] = Field(default_factory=lambda: ["en"], min_length=1,
                               description="Languages to write (en, zh); a task runs only its own.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="The model and its adapters.")
    sampling: SamplingSpec = Field(default_factory=SamplingSpec, description="How texts are sampled.")
    output: OutputSpec = Field(description="Where the Delta tables and run records go.")
    mode: Literal["incremental", "full"] = Field(
        default="incremental",
        description="incremental: regenerate only items whose inputs changed; full: everything.")
    on_delete: Literal["keep", "tombstone"] = Field(
        default="keep",
        description="A sku gone from the catalog: keep its content, or remove it from the current "
        "version (history keeps it).",
    )
    segments: list[str] = Field(
        default_factory=lambda: ["general"], min_length=1,
        description="Audience segments for per-segment tasks (blurb).",
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec,
                                     description="Engine replicas, batching and hardware.")
    guardrails: GuardrailSpec = Field(default_factory=GuardrailSpec,
                                      description="What a text must pass to be committed.")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in TASKS]
        if unknown:
            raise ValueError(_unknown("task(s)", unknown, TASKS))
        if len(set(v)) != len(v):
            raise ValueError("a task is listed twice; list each once")
        return v

    @field_validator("locales")
    @classmethod
    def _known_locales(cls, v: list[str]) -> list[str]:
        unknown = [x for x in v if x not in LOCALES]
        if unknown:
            raise ValueError(_unknown("locale(s)", unknown, LOCALES))
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> "JobSpec":
        needs_reviews = [t for t in self.tasks if TASKS[t].needs_reviews]
        if needs_reviews and self.reviews is None:
            raise ValueError(
                f"task(s) {needs_reviews} need a `reviews:` section (uri and columns); add one or "
                "remove the task"
            )
        bad = sorted(set(self.model.adapters) - set(self.tasks))
        if bad:
            raise ValueError(f"model.adapters names task(s) {bad} that are not in `tasks`"
                             f"{did_you_mean(bad[0], self.tasks)}")
        if self.guardrails.min_chars >= self.guardrails.max_chars:
            raise ValueError(
                f"guardrails.min_chars ({self.guardrails.min_chars}) must be below "
                f"guardrails.max_chars ({self.guardrails.max_chars})"
            )
        return self

    def redacted_dict(self) -> dict[str, Any]:
        """The spec as recorded in run records (it holds no secrets by construction)."""
        return self.model_dump(mode="json")


class SpecError(InputError):
    """A spec that cannot run. ``problems`` holds one (field, value, fix) line per error."""

    def __init__(self, problems: list[str], source: str = "spec"):
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))


def _model_at(root: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``path`` under ``root`` (``("catalog",)`` ->
    CatalogSpec), or None where the path leaves the models (a dict, a list)."""
    model = root
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        nested = [a for a in (field.annotation, *get_args(field.annotation))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def _fix_for(err: dict[str, Any], loc: str, root: type[BaseModel] | None = None) -> str:
    kind = err["type"]
    last = str(err["loc"][-1]) if err["loc"] else ""
    if kind == "extra_forbidden":
        if any(h in last.lower() for h in SECRET_HINTS):
            return ("remove it: credentials never go in a spec; set AWS_ACCESS_KEY_ID / "
                    "AWS_SECRET_ACCESS_KEY (or PDGEN_*) in the environment")
        model = _model_at(root, tuple(err["loc"][:-1])) if root is not None else None
        hint = did_you_mean(last, model.model_fields) if model is not None else ""
        return f"remove `{last}` or correct its spelling{hint}"
    if kind == "missing":
        return f"add `{loc}`"
    if kind.startswith(("greater_than", "less_than")):
        return "use a value within the bounds above"
    if kind == "string_pattern_mismatch":
        return "use a value matching the pattern above"
    if kind == "literal_error":
        return "use one of the values above"
    return "correct the value"


def _fmt_value(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _problems(exc: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One "field: message (value: ...); fix: ..." line per error. With ``root`` (the model
    validated), an unknown key's fix names the closest known key of its section."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        inp = err.get("input")
        # An unknown key or a URI with user:secret@ may hold a credential: never echo it.
        hide = err["type"] == "extra_forbidden" or isinstance(inp, str) and _USERINFO.match(inp)
        value = "not shown" if hide else _fmt_value(inp)
        out.append(f"{loc}: {msg} (value: {value}); fix: {_fix_for(err, loc, root)}")
    return out


def _set_path(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise SpecError([f"--set {dotted}: `{k}` is not a section"])
    d[keys[-1]] = value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a.b=c", ...]`` -> nested dict; values are parsed as YAML scalars (numbers, bools)."""
    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise SpecError([f"--set {p!r}: expected KEY=VALUE, e.g. --set sampling.max_tokens=64"])
        k, v = p.split("=", 1)
        try:
            value = yaml.safe_load(v)
        except (yaml.YAMLError, ValueError):  # "[" or "2024-13-01" (ValueError): the text itself
            value = v
        _set_path(out, k.strip(), value)
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def spec_from_dict(data: Any, source: str = "spec") -> JobSpec:
    if not isinstance(data, dict):
        raise SpecError([f"(top level): expected a mapping, got {type(data).__name__}"], source)
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(exc, JobSpec), source) from None


def load_spec(path: str | Path, overrides: list[str] | None = None) -> JobSpec:
    """Read a YAML spec, apply ``--set`` overrides, validate. Raises SpecError listing every problem."""
    p = Path(path)
    if not p.is_file():
        raise SpecError([f"spec file {str(p)!r} does not exist; pass the path of a YAML job spec"])
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError) as exc:  # PyYAML raises ValueError for "2024-13-01"
        raise SpecError([f"not valid YAML: {exc}"], str(p)) from None
    if overrides and isinstance(data, dict):
        data = _merge(data, parse_overrides(overrides))
    return spec_from_dict(data, str(p))


_SLUG = re.compile(r"[^a-z0-9._-]+")


def slug(s: str) -> str:
    return _SLUG.sub("-", s.lower()).strip("-")[:63] or "job"
