"""The fine-tune spec: a YAML file parsed into strict pydantic models (``extra="forbid"``).

Like the job spec (``pdgen_core.spec``), every error names the field, the value and the fix, all at
once. Environment facts (S3 endpoint, credentials, Ray address) come from the environment.
A re-run with the same ``name`` and ``storage_path`` resumes from the run's latest checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pdgen_core.spec import CANONICAL_COLUMNS, SpecError, _merge, _problems, iso_currency, parse_overrides
from pdgen_core.tasks import TASKS

# Metrics the evaluation reports; early stopping and best-checkpoint selection use one of them.
METRIC_MODES: dict[str, Literal["min", "max"]] = {
    "val_loss": "min", "perplexity": "min", "bleu": "max", "chrf": "max", "rougeL": "max",
    "guard_pass": "max",
}
LLAMA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    uri: str = Field(description="Catalog Parquet file/folder (s3:// or local), or synth://ROWS for "
                                 "the synthetic catalog.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="canonical name -> catalog column; unmapped names read the same-named column.",
    )
    currency: Annotated[str, AfterValidator(iso_currency)] = Field(
        default="USD", description="ISO 4217 code of `price` (pycountry's list, as the job spec's).")
    limit: int | None = Field(default=None, gt=0, description="Read at most this many rows.")
    min_chars: int = Field(default=40, ge=1, description="Drop reference texts shorter than this.")
    max_chars: int = Field(default=1200, ge=2, description="Drop reference texts longer than this.")
    val_fraction: float = Field(default=0.05, gt=0.0, lt=0.5, description="Share of text groups for validation.")
    test_fraction: float = Field(default=0.05, ge=0.0, lt=0.5, description="Share held out for `pdgen eval`.")
    split_salt: str = Field(default="pdgen-split-v1", description="Changing it reshuffles the split.")
    repair_glued: bool = Field(default=False, description="Split scraped glued words in reference texts "
                               "(\"lockOne\" -> \"lock. One\") and drop a text that keeps a glued "
                               "non-word; counted on the card (data.repaired, data.dropped.glued_words).")
    name_brand: bool = Field(default=False, description="Train and validate on reference texts that name "
                             "the row's brand (\" from <brand>\" after the first clause): catalog copy "
                             "rarely does, and the guardrails refuse a description without it.")
    ground_details: bool = Field(default=False, description="Cut from every train and validation "
                                 "reference the list items that state a construction detail the "
                                 "row's facts lack (\"has a spread collar, long sleeves\" on a title "
                                 "that names neither): an adapter trained on them gives perfume a "
                                 "collar. Counted on the card (data.dropped.reference_details_cut, "
                                 "reference_too_short_after_cut).")
    end_sentence: bool = Field(default=False, description="End every train and validation reference "
                               "on a full stop (a trailing comma or dash becomes one): catalog comma "
                               "lists rarely end one, and an adapter that learns them writes texts "
                               "the guard cannot trim to a last sentence when cut at max_tokens.")
    reference_guard: bool = Field(default=False, description="Train and validate only on reference texts "
                                  "that pass the task's guardrails against their own row (a reference "
                                  "naming a warranty or a fabric the facts lack teaches invention); the "
                                  "test split keeps every pair. Drops are counted as reference_<reason>.")

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(CANONICAL_COLUMNS))
        if unknown:
            raise ValueError(f"unknown canonical column(s) {unknown}; map only: {list(CANONICAL_COLUMNS)}")
        return v


class TinySpec(_Strict):
    """Size of the Llama made when ``model.from_scratch`` is true (head_dim is fixed at 64)."""

    hidden: int = Field(default=256, ge=64, le=4096, description="Multiple of 64: heads = hidden / 64.")
    layers: int = Field(default=4, ge=1, le=64, description="Transformer layers.")
    vocab_size: int = Field(default=4096, ge=300, le=65536, description="BPE vocabulary to train.")

    @field_validator("hidden")
    @classmethod
    def _head_dim(cls, v: int) -> int:
        if v % 64:
            raise ValueError(f"hidden={v} is not a multiple of 64 (vLLM's CPU attention needs head_dim 64)")
        return v


class ModelSpec(_Strict):
    source: str | None = Field(default="pdgen-tiny", description="Base model: HF folder, s3:// prefix "
                               "or pdgen-tiny (trained once on first use). Ignored when from_scratch.")
    from_scratch: bool = Field(default=False, description="Train a tiny Llama and its tokenizer from scratch.")
    tiny: TinySpec = Field(default_factory=TinySpec, description="The from-scratch model's shape.")
    max_seq_len: int = Field(default=384, ge=32, le=8192, description="Prompt + answer tokens; longer pairs are dropped.")
    prompt_format: Literal["auto", "chat", "completion"] = Field(
        default="completion", description="The prompt the pairs are built with, as the job spec's "
        "model.prompt_format: chat renders the task's messages through the base model's chat template "
        "(auto: chat when it has one); completion the task's plain template.")
    few_shot: bool = Field(default=False, description="Chat prompts only: keep the task's worked examples. "
                           "Off, the prompt is the system instruction and the row's facts (an adapter "
                           "learns the form; the examples triple every prompt): generation must render "
                           "the same for an adapter task, as its card's `prompt` says.")


class LoraSpec(_Strict):
    target_modules: list[str] = Field(default_factory=lambda: list(LLAMA_MODULES), min_length=1,
                                      description="Linear layers that get LoRA weights.")
    rank: int = Field(default=16, ge=1, le=256, description="vLLM needs max_lora_rank >= this.")
    alpha: float = Field(default=32.0, gt=0, description="LoRA scaling: updates scale by alpha / rank.")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")


class OptimSpec(_Strict):
    lr: float = Field(default=2e-3, gt=0.0, le=1.0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0, description="AdamW; not on norms and biases.")
    betas: tuple[float, float] = Field(default=(0.9, 0.95), description="AdamW betas.")
    warmup_steps: int = Field(default=20, ge=0, description="Linear warm-up steps to lr.")
    schedule: Literal["cosine", "linear", "constant"] = Field(
        default="cosine", description="Decay after warm-up, down to min_lr_ratio x lr.")
    min_lr_ratio: float = Field(default=0.1, ge=0.0, le=1.0, description="Final lr as a share of lr.")
    grad_clip: float = Field(default=1.0, gt=0.0, description="Max global gradient norm.")


class EarlyStopSpec(_Strict):
    metric: str = Field(default="val_loss", description=f"One of {sorted(METRIC_MODES)}.")
    patience: int = Field(default=2, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(default=0.0, ge=0.0, description="Smallest change that counts as an improvement.")

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in METRIC_MODES:
            raise ValueError(f"unknown metric {v!r}; use one of {sorted(METRIC_MODES)}")
        return v

    @property
    def mode(self) -> Literal["min", "max"]:
        return METRIC_MODES[self.metric]


class TrainSpec(_Strict):
    epochs: int = Field(default=1, ge=1, le=1000, description="Passes over the training pairs.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps.")
    max_seconds: float | None = Field(default=None, gt=0, description="Stop training after this long.")
    batch_size: int = Field(default=16, ge=1, le=4096, description="Pairs per worker per step.")
    eval_every_steps: int | None = Field(default=None, ge=1, description="Also evaluate (and checkpoint) "
                                         "every N steps; always at each epoch end.")
    eval_samples: int = Field(default=32, ge=0, le=4096, description="Validation pairs generated for "
                              "BLEU/chrF/ROUGE-L/guardrails per evaluation.")
    eval_pairs: int | None = Field(default=None, ge=1, description="Validation pairs whose loss each "
                                   "evaluation scores (the same first N every time); None: all of them.")
    max_new_tokens: int = Field(default=128, ge=1, le=4096, description="Generation budget of the eval samples.")
    early_stopping: EarlyStopSpec = Field(default_factory=EarlyStopSpec,
                                          description="Stop when a validation metric stops improving.")
    keep_checkpoints: int = Field(default=2, ge=1, description="Best checkpoints kept (plus the latest).")


class ResourcesSpec(_Strict):
    num_workers: int = Field(default=1, ge=0, le=1024, description="Ray Train workers; 0 runs in-process.")
    use_gpu: bool = Field(default=False, description="One GPU per Ray Train worker.")
    cpus_per_worker: float = Field(default=1.0, gt=0.0, description="CPUs Ray reserves per worker.")
    max_failures: int = Field(default=1, ge=0, description="Worker-group restarts from the latest checkpoint.")


class OutputSpec(_Strict):
    uri: str = Field(description="Registry root (s3:// or local): adapters go to <uri>/adapters/<task>/<version>/.")


class FinetuneSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
                      description="Run name; re-running the same name resumes from its latest checkpoint.")
    task: str = Field(default="description", description="The task whose adapter is trained.")
    locale: str = Field(default="en", description="The locale of its prompts and reference texts.")
    data: DataSpec = Field(description="The reference texts to train on.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="The base model (or a from-scratch one).")
    lora: LoraSpec | None = Field(default=None, description="LoRA settings; default LoRA unless from_scratch.")
    optim: OptimSpec = Field(default_factory=OptimSpec, description="Optimizer and learning-rate schedule.")
    train: TrainSpec = Field(default_factory=TrainSpec, description="Steps, evaluation and checkpoints.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Ray Train workers.")
    storage_path: str = Field(description="Ray Train checkpoints: s3://bucket/prefix or a local folder.")
    output: OutputSpec = Field(description="The adapter registry to publish to.")
    seed: int = Field(default=0, ge=0, description="Seeds initialisation, shuffling and the eval samples.")

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"unknown task {v!r}; available: {sorted(TASKS)}")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> "FinetuneSpec":
        if self.locale not in TASKS[self.task].locales:
            raise ValueError(f"locale {self.locale!r}: task {self.task!r} has {list(TASKS[self.task].locales)}")
        if self.model.from_scratch and self.lora is not None:
            raise ValueError("model.from_scratch trains every weight: remove the `lora:` section "
                             "or set model.from_scratch: false")
        if not self.model.from_scratch and not self.model.source:
            raise ValueError("model.source is empty: name a base model (pdgen-tiny, a folder, s3://) "
                             "or set model.from_scratch: true")
        if self.model.from_scratch and self.model.prompt_format == "chat":
            raise ValueError("model.prompt_format chat needs a base model with a chat template; a "
                             "from-scratch model has none: use completion")
        if self.data.min_chars >= self.data.max_chars:
            raise ValueError(f"data.min_chars ({self.data.min_chars}) must be below data.max_chars "
                             f"({self.data.max_chars})")
        if self.data.val_fraction + self.data.test_fraction >= 0.8:
            raise ValueError("data.val_fraction + data.test_fraction leave under 20% for training; lower them")
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_lora(cls, data: Any) -> Any:
        # LoRA is the default way to fine-tune a base model; from-scratch training has no adapter.
        if isinstance(data, dict) and "lora" not in data:
            model = data.get("model")
            if not (isinstance(model, dict) and model.get("from_scratch")):
                data = {**data, "lora": {}}
        return data

    @property
    def kind(self) -> Literal["lora", "full"]:
        return "full" if self.model.from_scratch else "lora"


def spec_from_dict(data: Any, source: str = "finetune spec") -> FinetuneSpec:
    if not isinstance(data, dict):
        raise SpecError([f"(top level): expected a mapping, got {type(data).__name__}"], source)
    try:
        return FinetuneSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(exc), source) from None


def load_finetune_spec(path: str | Path, overrides: list[str] | None = None) -> FinetuneSpec:
    """Read a fine-tune YAML, apply ``--set a.b=c`` overrides, validate; SpecError lists every problem."""
    p = Path(path)
    if not p.is_file():
        raise SpecError([f"spec file {str(p)!r} does not exist; pass the path of a fine-tune YAML "
                         "(see pdgen_core/configs/finetune-*.yaml)"])
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError) as exc:  # PyYAML raises ValueError for "2024-13-01"
        raise SpecError([f"not valid YAML: {exc}"], str(p)) from None
    if overrides and isinstance(data, dict):
        data = _merge(data, parse_overrides(overrides))
    return spec_from_dict(data, str(p))
