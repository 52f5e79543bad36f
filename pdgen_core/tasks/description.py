"""``description``: a product description from the row's title, brand, price and attributes.

The ``en`` template's format ("### Product ... ### Description") is what the fine-tuned
adapters were trained on: change it only with a version bump and a new adapter.

No ``price``/``brand`` guardrails yet: the fine-tune evaluation (``finetune/metrics.py``) scores
against this set, and the untrained model's e2e runs expect most rows accepted.
"""

from pdgen_core.tasks.base import Task

TASK = Task(
    name="description",
    version="1",
    fields=("title", "brand", "price", "category", "color", "material", "gender", "attributes"),
    chat_sampling={"temperature": 0.2, "top_p": 0.9, "repetition_penalty": 1.05, "max_tokens": 96},
    guardrails=("truncated", "length", "repetition", "language", "pii", "injection"),
)
