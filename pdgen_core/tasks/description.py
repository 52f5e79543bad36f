"""``description``: a product description from the row's title, brand, price and attributes."""

from pdgen_core.tasks.base import Task

TASK = Task(
    name="description",
    version="1",
    fields=("title", "brand", "price", "category", "color", "material", "gender", "attributes"),
    locales=("en",),
    guardrails=("length", "repetition"),
)
