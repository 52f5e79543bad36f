"""Errors: what went wrong, named for the part that failed.

``root_cause`` digs the original error out of Ray's wrappers, so that a message can quote it.
"""

from __future__ import annotations

import re

_ERROR_LINE = re.compile(r"^\s*((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit)): (.+)$")
_WRAPPERS = ("RayTaskError", "ActorDiedError", "RaySystemError", "UserCodeException", "EngineError")


def root_cause(exc: BaseException) -> str:
    """The innermost ``SomeError: message`` line behind ``exc``: Ray wraps an engine that failed
    to start in actor and task errors whose text carries the original traceback."""
    lines = []
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        lines.extend(str(e).splitlines())
        lines.append(f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else "")
        e = e.__cause__ or e.__context__
    found = [m for m in map(_ERROR_LINE.match, lines) if m and not m.group(1).split(".")[-1].startswith(_WRAPPERS)]
    if not found:
        return f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    # the last error a traceback prints is the one raised first... of the innermost cause
    m = found[-1]
    return f"{m.group(1)}: {m.group(2).strip()[:400]}"


