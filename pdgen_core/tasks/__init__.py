"""The task registry: name -> ``Task``. One module per task, templates in ``templates/``."""

from pdgen_core.tasks.base import Task
from pdgen_core.tasks.description import TASK as _description

TASKS: dict[str, Task] = {t.name: t for t in (_description,)}
LOCALES = ("en", "zh")

__all__ = ["LOCALES", "TASKS", "Task"]
