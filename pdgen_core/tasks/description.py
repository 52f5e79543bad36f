"""``description``: a product description from the row's title, brand, price and attributes.

The ``en`` template's format ("### Product ... ### Description") is what the fine-tuned
adapters were trained on: change it only with a version bump and a new adapter.

It runs every guardrail that applies to a text about one product (issue 17): a description is the
copy a shopper reads first, so it is held to the facts (price, brand, names, attributes, numbers)
like every other task. What the guard lets through is never shaped to make a test pass.

``brand.missing`` is left out on purpose: a description need not repeat the brand shown beside
it (the human Myntra descriptions rarely do), and on the labelled SmolLM2 corpus it rejected 5 of
31 publishable descriptions for no fault a reader would see. Other brands and invented names are
still refused (``brand.other``, ``names``).
"""

from pdgen_core.tasks.base import Task
from pdgen_core.tasks.checks import GroundNumbers

TASK = Task(
    name="description",
    version="1",
    fields=("title", "brand", "price", "category", "color", "material", "gender", "attributes"),
    chat_sampling={"temperature": 0.2, "top_p": 0.9, "repetition_penalty": 1.05, "max_tokens": 96},
    guardrails=("truncated", "length", "language", "meta", "echo", "degenerate", "repetition", "injection", "pii",
                "price", "brand.other", "banned", "names", "attributes"),
    ground=GroundNumbers(),
)
