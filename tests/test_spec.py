"""pdgen_core.spec: the job spec's parsing, its error messages (field, fix, "did you mean") and --set overrides."""

import pytest
import yaml

from pdgen_core.spec import SpecError, load_spec, parse_overrides, spec_from_dict

GOOD = {
    "name": "spring-refresh",
    "catalog": {"uri": "s3://catalog/products/", "columns": {"sku": "product_id", "title": "product_name"},
                "currency": "INR", "limit": 10},
    "tasks": ["description"],
    "output": {"uri": "s3://content/"},
}


def test_good_spec_parses_with_defaults():
    s = spec_from_dict(GOOD)
    assert s.model.source == "smollm2-135m-instruct"
    assert s.resources.replicas == 1 and s.mode == "incremental"
    assert s.catalog.currency == "INR"


def test_every_error_reported_at_once_with_field_value_fix():
    bad = {**GOOD, "mode": "sometimes", "sampling": {"temperature": 9, "max_tokens": 0},
           "resources": {"replicas": 0}, "tasks": ["poem"], "colour": "red"}
    with pytest.raises(SpecError) as ei:
        spec_from_dict(bad)
    problems = ei.value.problems
    text = "\n".join(problems)
    for field in ("mode", "sampling.temperature", "sampling.max_tokens", "resources.replicas", "tasks", "colour"):
        assert any(p.startswith(field) for p in problems), (field, text)
    assert all("fix:" in p and "value:" in p for p in problems)
    assert "'sometimes'" in text and "available: [" in text and "'description'" in text


def test_credentials_in_spec_are_refused_with_env_fix():
    bad = {**GOOD, "output": {"uri": "s3://x/", "aws_secret_access_key": "hunter2"}}
    with pytest.raises(SpecError) as ei:
        spec_from_dict(bad)
    msg = str(ei.value)
    assert "AWS_SECRET_ACCESS_KEY" in msg and "environment" in msg


def test_unknown_canonical_column_and_bad_currency():
    bad = {**GOOD, "catalog": {"uri": "x", "columns": {"colour": "c"}, "currency": "rupees"}}
    with pytest.raises(SpecError) as ei:
        spec_from_dict(bad)
    text = str(ei.value)
    assert "catalog.columns" in text and "colour" in text and "catalog.currency" in text


def test_load_spec_with_overrides(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump(GOOD))
    s = load_spec(p, ["sampling.max_tokens=32", "resources.batch_size=8", "mode=full"])
    assert s.sampling.max_tokens == 32 and s.resources.batch_size == 8 and s.mode == "full"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(p)


def test_parse_overrides_needs_key_value():
    assert parse_overrides(["a.b=3", "c=x"]) == {"a": {"b": 3}, "c": "x"}
    with pytest.raises(SpecError, match="KEY=VALUE"):
        parse_overrides(["oops"])


def test_shipped_yaml_specs_load():
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[1] / "pdgen_core" / "configs"
    specs = [p for p in cfg.glob("*.yaml") if "finetune" not in p.name]  # the rest are job specs
    assert specs
    for p in specs:
        load_spec(p)


def test_engine_settings_reach_the_engine_actors():
    """The engine actors get the restart bound, the rows of a call and, on the CPU,
    OMP_NUM_THREADS with the engine core in the actor (the only executor in which vLLM's CPU
    backend honours it); tensor parallel gets a placement group per actor and no GPU of Ray
    Data's own."""
    from pdgen_core.stages import generate

    def spec(**res):
        return spec_from_dict({"name": "x", "catalog": {"uri": "s3://b/c/"}, "tasks": ["description"],
                               "output": {"uri": "s3://b/o/"}, "resources": res})

    assert generate.engine_threads(spec()) == 1
    assert generate.engine_threads(spec(cpus_per_replica=4)) == 4
    assert generate.engine_threads(spec(cpus_per_replica=4, engine_threads=8)) == 8
    assert generate.engine_threads(spec(gpus_per_replica=1, engine_threads=8)) is None

    cpu = generate.map_batches_kwargs(spec(engine_threads=6, max_engine_restarts=2, replicas=3))
    assert cpu["runtime_env"]["env_vars"] == {"OMP_NUM_THREADS": "6", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    assert cpu["max_restarts"] == cpu["max_task_retries"] == 2 and cpu["concurrency"] == 3
    assert cpu["batch_size"] == 64 * 4 and cpu["num_cpus"] == 1 and "num_gpus" not in cpu
    one = generate.map_batches_kwargs(spec(gpus_per_replica=1))
    assert one["num_gpus"] == 1 and "runtime_env" not in one and "ray_remote_args_fn" not in one
    tp = generate.map_batches_kwargs(spec(gpus_per_replica=4))
    assert tp["num_gpus"] == 0 and callable(tp["ray_remote_args_fn"])


def test_engine_kwargs_keep_the_engine_fed_and_the_worker_in_process():
    """The engine runs half the rows in flight (at most 256) so a batch is queued while another
    drains; CPU engines use the in-process worker, GPU engines vLLM's own executor."""
    from pdgen_core.stages import generate

    def kw(**res):
        return generate.engine_kwargs(spec_from_dict({
            "name": "x", "catalog": {"uri": "s3://b/c/"}, "tasks": ["description"],
            "output": {"uri": "s3://b/o/"}, "resources": res}), enable_lora=False)

    assert kw()["max_num_seqs"] == 128  # 64 rows x 4 batches / 2
    assert kw(batch_size=256, max_concurrent_batches=4)["max_num_seqs"] == 256
    assert kw(batch_size=8, max_concurrent_batches=1)["max_num_seqs"] == 16
    assert kw()["distributed_executor_backend"] == "uni" and kw()["enable_chunked_prefill"] is False
    gpu = kw(gpus_per_replica=2)
    assert "distributed_executor_backend" not in gpu and gpu["tensor_parallel_size"] == 2



def test_a_guard_retry_changes_the_sampling_not_only_the_seed():
    """At temperature 0 a new seed alone writes the same rejected text again: a retry adds
    ``sampling.retry`` (a repetition penalty by default). Specs that never set it keep their
    fingerprints' sampling hash; one that sets it has it in the hash."""
    from pdgen_core.context_from_spec import build_context
    from pdgen_core.stages.plan import work_items
    from pdgen_core.stages.prompt import engine_request

    def ctx(**sampling):
        return build_context(spec_from_dict({**GOOD, "sampling": {"temperature": 0.0, **sampling}}),
                             "r", "m", frozenset())

    c = ctx()
    item = next(iter(work_items({"sku": "A1", "title": "Linen shirt", "reject_reason": None}, c)))
    first = engine_request(item, c, {})["sampling_params"]
    second = engine_request({**item, "attempt": 2}, c, {})["sampling_params"]
    assert first["temperature"] == 0.0 and first["repetition_penalty"] == 1.0  # off, but present (one struct)
    assert second["repetition_penalty"] == 1.2 and second["temperature"] == 0.0
    assert second["seed"] != first["seed"]

    hot = ctx(retry={"temperature": 0.7, "repetition_penalty": 1.0})
    third = engine_request({**item, "attempt": 3}, hot, {})["sampling_params"]
    assert third["temperature"] == 0.7 and third["repetition_penalty"] == 1.0

    # The default retry is not in the hash (fingerprints from before it existed still match);
    # an explicit one, or a first-attempt penalty, is.
    base = ctx().sampling_hash("description")
    assert ctx(repetition_penalty=1.0).sampling_hash("description") == base
    assert ctx(retry={"repetition_penalty": 1.2}).sampling_hash("description") != base
    assert ctx(repetition_penalty=1.1).sampling_hash("description") != base
    assert engine_request(item, ctx(repetition_penalty=1.1), {})["sampling_params"]["repetition_penalty"] == 1.1


def test_retry_sampling_is_checked_with_the_field_named():
    with pytest.raises(SpecError) as e:
        spec_from_dict({**GOOD, "sampling": {"retry": {"repetition_penalty": 0, "top_k": 3}}})
    msg = str(e.value)
    assert "sampling.retry.repetition_penalty" in msg and "sampling.retry.top_k" in msg


def test_guard_settings_are_typed_frozen_and_come_from_the_spec():
    """``RunContext.guard`` is a frozen ``GuardSettings`` built from ``guardrails`` (the
    url_allowlist too); its defaults are the spec's."""
    import dataclasses

    from pdgen_core.context_from_spec import build_context
    from pdgen_core.run_context import GuardSettings
    from pdgen_core.stages.guard import guard_context

    spec = spec_from_dict({**GOOD, "guardrails": {"max_chars": 900, "url_allowlist": ["example.com"],
                                                  "banned_terms": ["cheap"]}})
    g = build_context(spec, "r", "m", frozenset({"Acme"})).guard
    assert g == GuardSettings(known_brands=frozenset({"Acme"}), banned_terms=("cheap",),
                              url_allowlist=("example.com",), min_chars=20, max_chars=900)
    try:
        g.max_chars = 1  # type: ignore[misc]
        raise AssertionError("GuardSettings must be frozen")
    except dataclasses.FrozenInstanceError:
        pass
    defaults = spec_from_dict(GOOD).guardrails
    assert (GuardSettings().min_chars, GuardSettings().max_chars) == (defaults.min_chars, defaults.max_chars)
    row = {"locale": "en", "task": "description", "fields_json": "{}"}
    ctx = build_context(spec, "r", "m", frozenset())
    assert guard_context(row, ctx).url_allowlist == ("example.com",)


def _fields(model, prefix=""):
    """(dotted name, FieldInfo) of every field of ``model`` and of the models it nests."""
    import typing

    import pydantic

    for name, f in model.model_fields.items():
        yield prefix + name, f
        for t in (f.annotation, *typing.get_args(f.annotation)):
            if isinstance(t, type) and issubclass(t, pydantic.BaseModel):
                yield from _fields(t, f"{prefix}{name}.")


def test_every_job_spec_and_finetune_spec_field_is_described():
    from pdgen_core.finetune.config import FinetuneSpec
    from pdgen_core.spec import JobSpec

    for spec in (JobSpec, FinetuneSpec):
        missing = [n for n, f in _fields(spec) if not (f.description or "").strip()]
        assert not missing, f"{spec.__name__}: fields without a description: {missing}"
        assert len(list(_fields(spec))) > 20  # the walk reached the nested sections


# --- issue 20: ISO 4217 currencies, "did you mean", YAML errors verbatim ------------------------


def test_currency_is_checked_against_iso_4217():
    """pycountry's ISO 4217 list, not a regex: XYZ has the shape of a code but is no currency."""
    assert spec_from_dict({**GOOD, "catalog": {**GOOD["catalog"], "currency": "inr"}}).catalog.currency == "INR"
    assert spec_from_dict({**GOOD, "catalog": {**GOOD["catalog"], "currency": "EUR"}}).catalog.currency == "EUR"
    for bad in ("XYZ", "rupees", "US"):
        with pytest.raises(SpecError) as ei:
            spec_from_dict({**GOOD, "catalog": {**GOOD["catalog"], "currency": bad}})
        (problem,) = ei.value.problems
        assert problem.startswith("catalog.currency:"), problem
        assert "not an ISO 4217 currency code" in problem and "USD, EUR or INR" in problem, problem


def test_unknown_keys_tasks_locales_and_columns_say_did_you_mean():
    bad = {**GOOD, "tasks": ["descripton"], "locales": ["EN"], "outptu": 1,
           "catalog": {**GOOD["catalog"], "limt": 3, "columns": {"titel": "name"}},
           "sampling": {"temprature": 0.5}}
    with pytest.raises(SpecError) as ei:
        spec_from_dict(bad)
    by_field = {p.split(":", 1)[0]: p for p in ei.value.problems}
    assert "did you mean 'description'?" in by_field["tasks"]
    assert "did you mean 'en'?" in by_field["locales"]
    assert "did you mean 'output'?" in by_field["outptu"]
    assert "did you mean 'limit'?" in by_field["catalog.limt"]
    assert "did you mean 'title'?" in by_field["catalog.columns"]
    assert "did you mean 'temperature'?" in by_field["sampling.temprature"]
    with pytest.raises(SpecError, match=r"guardrails\.min_accept_rate: .*did you mean 'blurb'\?"):
        spec_from_dict({**GOOD, "guardrails": {"min_accept_rate": {"blrub": 0.3}}})
    # Nothing close: no guess, the list of what is available instead.
    with pytest.raises(SpecError) as ei:
        spec_from_dict({**GOOD, "tasks": ["poem"]})
    assert "did you mean" not in str(ei.value) and "available: [" in str(ei.value)


def test_unknown_key_from_set_override_says_did_you_mean(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump(GOOD))
    with pytest.raises(SpecError, match=r"sampling\.seeed: .*did you mean 'seed'\?"):
        load_spec(p, ["sampling.seeed=1"])


def test_yaml_syntax_error_is_printed_verbatim(tmp_path):
    """rich markup used to eat the brackets of the quoted YAML line ("tasks: [description")."""
    from typer.testing import CliRunner

    from pdgen_core.cli import app

    p = tmp_path / "bad.yaml"
    p.write_text("name: x\ntasks: [description\noutput: {uri: /tmp/o}\n")
    with pytest.raises(SpecError) as ei:
        load_spec(p)
    expected = str(ei.value)
    assert "[" in expected
    r = CliRunner().invoke(app, ["validate", str(p)])
    assert r.exit_code == 2
    assert expected in r.stderr, r.stderr


def test_feed_skus_not_in_catalog_or_beyond_limit_are_counted_and_reported(tmp_path):
    """A changes feed that names skus the run cannot regenerate says how many, and why: not in
    the catalog at all, or in it past ``catalog.limit`` (the run read only the first rows)."""
    import datetime as dt
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pdgen_core import incremental
    from pdgen_core.cli.app import console
    from pdgen_core.cli.run import one_line, print_summary
    from pdgen_core.run_record import Counts, build_record

    pq.write_table(pa.table({"product_id": [f"p{i}" for i in range(10)], "name": ["t"] * 10}),
                   tmp_path / "cat.parquet")
    spec = spec_from_dict({**GOOD, "catalog": {"uri": str(tmp_path), "limit": 4,
                                               "columns": {"sku": "product_id", "title": "name"}}})

    class Clean:  # the catalog's first 4 rows narrowed to the feed, as the Ray Dataset answers
        def select_columns(self, cols):
            return self

        def iter_batches(self, batch_format):
            yield pa.table({"sku": ["p1"]})

    feed = pa.table({"sku": ["p1", "p7", "p8", "nope", None]})
    unknown, past = incremental.feed_misses(feed, Clean(), spec.catalog)
    assert (unknown, past) == (["nope"], ["p7", "p8"])
    no_limit = spec.catalog.model_copy(update={"limit": None})
    assert incremental.feed_misses(feed, Clean(), no_limit) == (["nope", "p7", "p8"], [])

    c = Counts(feed_unknown_skus=len(unknown), feed_beyond_limit=len(past))
    c.add("description", "accepted", 1)
    record = build_record(spec, "r1", c, dt.datetime.now(dt.timezone.utc), time.monotonic(), {}, "m", 1.0, [])
    assert (record["counts"]["feed_unknown_skus"], record["counts"]["feed_beyond_limit"]) == (1, 2)
    line = one_line(record)
    assert "\n" not in line and "feed skus skipped: 1 not in the catalog, 2 beyond catalog.limit (4)" in line
    with console.capture() as cap:
        print_summary(record)
    assert "feed skus skipped: 1 not in the catalog, 2 beyond catalog.limit (4)" in cap.get()
    assert "feed skus" not in one_line(build_record(spec, "r2", Counts(), dt.datetime.now(dt.timezone.utc),
                                                    time.monotonic(), {}, "m", 1.0, []))


def test_no_generation_task_reads_the_catalog_description_and_the_readme_says_so():
    """The catalog's `description` is the fine-tune target only: no task's prompt reads it, a
    generation run does not read the column, and the README says so where it lists the fields."""
    from pathlib import Path

    from pdgen_core.context_from_spec import wanted_fields
    from pdgen_core.tasks import TASKS

    assert not [t for t, task in TASKS.items() if "description" in task.fields]
    every = spec_from_dict({**GOOD, "tasks": sorted(TASKS), "reviews": {"uri": "s3://c/r/"}})
    assert "description" not in wanted_fields(every)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "No generation task reads the\ncatalog's `description`" in readme
    assert "only the fine-tune target" in readme
