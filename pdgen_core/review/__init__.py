"""``pdgen review``: a local web app where a person reviews a staged run before it is published.

    stats.py      how many rows to sample, and what a reviewed sample bounds (Clopper-Pearson)
    queue.py      a staged run's rows per task and locale: the sample plus every borderline row
    decisions.py  the ``reviews/<task>/`` Delta table: approve, reject with a reason, edit
    publish.py    promote through ``versions.promote``, taking the approved rows (or all)
    app.py        the Starlette app: pages, forms, CSRF, the token, the host check
    pages.py      its Jinja2 templates (autoescaped)

Start it with ``pdgen review OUTPUT_URI [--run RUN_ID]``.
"""

from pdgen_core.review.app import create_app
from pdgen_core.review.publish import publish_reviewed

__all__ = ["create_app", "publish_reviewed"]
