"""pdgen_core.errors: one tree, exit codes in one place, and a failed round named for its stage."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pdgen_core import errors
from pdgen_core.errors import INPUT_ERROR, InputError, StageError, exit_code, failed_stage, root_cause
from pdgen_core.finetune.registry import AdapterNotFound
from pdgen_core.models.resolve import ModelError
from pdgen_core.generation import stage_failure
from pdgen_core.spec import SpecError
from pdgen_core.stages.generate import EngineError
from pdgen_core.stages.read import CatalogError


def test_input_errors_exit_2_stage_errors_1_and_bugs_raise():
    for exc in (SpecError(["x"]), CatalogError("c"), ModelError("m"), AdapterNotFound("a"),
                ValueError("v"), FileNotFoundError("f"), OSError("s3")):
        assert exit_code(exc) == INPUT_ERROR, exc
    assert isinstance(AdapterNotFound("a"), LookupError)  # callers that caught LookupError still do
    assert exit_code(StageError("guard", "g")) == 1 and exit_code(EngineError("e")) == 1
    assert exit_code(KeyError("bug")) is None and exit_code(RuntimeError("bug")) is None


def _raised(inner: BaseException, wrapper_text: str = "") -> BaseException:
    """``inner`` behind a Ray-like wrapper whose text carries the remote traceback."""
    class RayTaskError(Exception):
        pass

    try:
        try:
            raise inner
        except BaseException as e:
            raise RayTaskError(wrapper_text or f"ray::MapBatches()\n{type(e).__name__}: {e}") from e
    except RayTaskError as outer:
        return outer


def test_a_failed_generation_pass_names_the_stage_that_raised():
    guard_bug = _raised(KeyError("x"), 'Traceback:\n  File "/x/pdgen_core/stages/guard.py", line 9, '
                                       "in judge\nKeyError: 'x'")
    assert failed_stage(guard_bug) == "guard"
    assert failed_stage(_raised(StageError("guard", "the guard raised KeyError"))) == "guard"
    storage = _raised(OSError("When uploading part for key 'out/_staging/r/generated/x.parquet': "
                              "AWS Error SLOW_DOWN (503)"))
    assert failed_stage(storage) == "storage"
    dead = _raised(RuntimeError("Engine core initialization failed. See root cause above."))
    assert failed_stage(dead) == "generate"

    e = stage_failure(storage)
    assert type(e) is StageError and e.stage == "storage" and "The vLLM engine" not in str(e)
    assert "storage" in str(e) and "output.uri" in str(e)
    g = stage_failure(guard_bug)
    assert g.stage == "guard" and "guard" in str(g) and "vLLM" not in str(g)
    d = stage_failure(dead)
    assert isinstance(d, EngineError) and "The vLLM engine died or could not start" in str(d)


def test_a_guard_bug_is_named_the_guard_s():
    """The guard runs in the engine actor (generate.EngineActor): a bug in it still reads as the
    guard's, from its frames in the traceback, not as a dead engine."""
    import traceback

    from pdgen_core.stages.guard import judge

    with pytest.raises(KeyError) as ei:
        judge({"task": "no-such-task"}, ctx=None)
    remote = _raised(ei.value, "ray::MapBatches(EngineActor)\n" + "".join(traceback.format_exception(ei.value)))
    assert failed_stage(remote) == "guard" and stage_failure(remote).stage == "guard"


def test_stage_errors_survive_pickling_to_the_driver():
    import pickle

    e = pickle.loads(pickle.dumps(StageError("guard", "boom")))
    assert (e.stage, str(e)) == ("guard", "boom")
    d = pickle.loads(pickle.dumps(EngineError("dead")))
    assert (d.stage, str(d)) == ("generate", "dead")


def test_the_tree_has_one_root():
    for cls in (SpecError, CatalogError, ModelError, AdapterNotFound):
        assert issubclass(cls, InputError) and issubclass(cls, errors.PdgenError)
    assert issubclass(EngineError, StageError)


def test_finetune_yaml_that_pyyaml_rejects_with_valueerror_is_a_spec_error(tmp_path):
    """PyYAML raises ValueError, not YAMLError, for an impossible date; both spec loaders say
    'not valid YAML' (the fine-tune loader had lost the catch)."""
    from pdgen_core.finetune.config import load_finetune_spec
    from pdgen_core.spec import load_spec

    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nwhen: 2024-13-01\n")
    for load in (load_spec, load_finetune_spec):
        with pytest.raises(SpecError, match="not valid YAML"):
            load(p)


def test_the_finetune_ray_job_is_the_finetune_command():
    """ray_jobs/finetune.py runs ``pdgen finetune``: one set of catches and exit codes."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "ray_jobs" / "finetune.py").read_text()
    assert 'app(["finetune", *sys.argv[1:]])' in text and "except" not in text


def test_engine_error_names_the_root_cause_behind_ray_wrappers():
    try:
        try:
            raise ValueError("head_dim 32 is not supported on the CPU backend")
        except ValueError as inner:
            raise RuntimeError("Engine core initialization failed. See root cause above.") from inner
    except RuntimeError as exc:
        assert root_cause(exc) == "ValueError: head_dim 32 is not supported on the CPU backend"

    class ActorDiedError(Exception):
        pass

    text = ("The actor died because of an error raised in its creation task, ray::Engine.__init__()\n"
            "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
            "ray.exceptions.RayTaskError: wrapped\n"
            "torch.OutOfMemoryError: cannot allocate 4.0 GiB for the KV cache\n")
    assert root_cause(ActorDiedError(text)) == "torch.OutOfMemoryError: cannot allocate 4.0 GiB for the KV cache"
    assert root_cause(KeyError("x")) == "KeyError: 'x'"
