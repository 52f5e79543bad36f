"""Errors: one tree, and the exit codes in one place.

Bad rows are data (rejects); a broken system raises. What it raises says who fixes it:

- ``InputError`` (exit 2): the spec, the data, the model or the credentials are wrong; the message
  names the field or file and the fix. ``SpecError``, ``CatalogError``, ``ModelError``,
  ``AdapterNotFound``, ``VersionError``, ``AuditError`` and ``GGUFError`` are its kinds. A
  ``ValueError`` or an ``OSError`` (storage: a missing bucket, a refused credential) that reaches
  a command counts as input too, as it always did.
- ``StageError`` (exit 1): a stage failed while the run was working; ``stage`` names it
  (``generate``, ``guard``, ``storage``), so that a storage error does not read as a dead engine.
- ``BelowFloor`` (exit 1): the run committed, but a task's accept rate is below
  ``guardrails.min_accept_rate``, so it is held as staged, not published; a scheduler sees a
  failed job, and the content stays as it was.

``exit_code`` is the mapping every command (``pdgen_core.cli``, ``ray_jobs/``) uses. Anything
else is a bug and keeps its traceback. This module imports nothing of pdgen: any module may
raise these.
"""

from __future__ import annotations

import re

OK, FAILED, INPUT_ERROR = 0, 1, 2


class PdgenError(Exception):
    """Base of pdgen's own errors; ``exit_code`` is how a command exits on it."""

    exit_code = FAILED


class InputError(PdgenError):
    """What the user must fix (spec, data, model, credentials); the message says how."""

    exit_code = INPUT_ERROR


class StageError(PdgenError):
    """A stage of a running job failed (not a bad row: those are rejects)."""

    exit_code = FAILED

    def __init__(self, stage: str, message: str):
        super().__init__(stage, message)  # both in args: Ray pickles it back to the driver
        self.stage = stage
        self.message = message

    def __str__(self) -> str:
        return self.message


class BelowFloor(PdgenError):
    """A committed run held as staged below ``guardrails.min_accept_rate`` (the message says
    which task, its rate, and how to publish it anyway)."""

    exit_code = FAILED


def exit_code(exc: BaseException) -> int | None:
    """The exit status for ``exc``, or None for a bug (let it raise with its traceback)."""
    if isinstance(exc, PdgenError):
        return exc.exit_code
    if isinstance(exc, (ValueError, OSError)):
        return INPUT_ERROR
    return None


# Where a failure inside generate -> guard -> write came from. A guard bug's traceback runs
# through stages/guard.py; storage fails with an OSError (pyarrow's S3 errors are OSErrors);
# anything else in that pipeline is the engine's.
_GUARD_FRAME = re.compile(r"pdgen_core[/\\]stages[/\\]guard\.py")
_STORAGE_ERRORS = ("OSError", "IOError", "ArrowIOError", "FileNotFoundError", "PermissionError",
                   "ConnectionError", "TimeoutError")
STAGE_FIXES = {
    "generate": "The vLLM engine died or could not start. Check model.source, "
                "resources.memory_fraction and the worker logs.",
    "guard": "The guard raised instead of judging a row: a bug in pdgen's guard stage or a task's "
             "checks, not in the data. The traceback in the detail names the check.",
    "storage": "Writing the staged output failed. Check output.uri, the bucket, and AWS_* "
               "credentials in the environment.",
}


def _chain(exc: BaseException):
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def failed_stage(exc: BaseException) -> str:
    """``generate``, ``guard`` or ``storage``: which part of generate -> guard -> write raised."""
    for e in _chain(exc):
        if isinstance(e, StageError):
            return e.stage
    text = "\n".join(str(e) for e in _chain(exc))
    if _GUARD_FRAME.search(text):
        return "guard"
    cause = root_cause(exc).split(":", 1)[0].split(".")[-1]
    if cause in _STORAGE_ERRORS or any(isinstance(e, OSError) for e in _chain(exc)):
        return "storage"
    return "generate"


_ERROR_LINE = re.compile(r"^\s*((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit)): (.+)$")
_WRAPPERS = ("RayTaskError", "ActorDiedError", "RaySystemError", "UserCodeException", "EngineError",
             "StageError")


def root_cause(exc: BaseException) -> str:
    """The innermost ``SomeError: message`` line behind ``exc``: Ray wraps an engine that failed
    to start in actor and task errors whose text carries the original traceback."""
    lines = []
    for e in _chain(exc):
        lines.extend(str(e).splitlines())
        lines.append(f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else "")
    found = [m for m in map(_ERROR_LINE.match, lines) if m and not m.group(1).split(".")[-1].startswith(_WRAPPERS)]
    if not found:
        return f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    # the last error a traceback prints is the one raised first... of the innermost cause
    m = found[-1]
    return f"{m.group(1)}: {m.group(2).strip()[:400]}"
