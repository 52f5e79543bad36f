"""The task registry: name -> ``Task``. One module per task, one template per locale in
``templates/<task>.<locale>.j2``; see ``base.py`` for what a task declares and how its outputs are
judged (guardrails, then ``parse``, then ``ground``)."""

from pdgen_core.tasks import ad_copy, blurb, description, faq, review_digest, social_post
from pdgen_core.tasks.base import LOCALES, Task

TASKS: dict[str, Task] = {
    m.TASK.name: m.TASK for m in (description, review_digest, blurb, ad_copy, faq, social_post)
}

__all__ = ["LOCALES", "TASKS", "Task"]
