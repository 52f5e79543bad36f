"""The generation service (``pdgen_core.service``, issue 23): a Ray Serve application whose vLLM
engine outlives jobs. Jobs find it and hand it their batches; their rows are the rows their own
engine actors would have written (per-row seeds and sampling, the task's LoRA); a job it cannot
serve starts its own actors and says why.

The session's service on pdgen-tiny (conftest ``tiny_service``, which other modules' jobs use
too), three jobs: with a LoRA adapter from the
registry through the service, the same through the job's own actors (``PDGEN_ENGINE_SERVICE=off``),
and without the adapter through the service. They are also the suite's check that a registry
adapter reaches vLLM as a LoRA request per row, in either engine, and that its version is in the
lineage and the fingerprints.
"""

from __future__ import annotations

import pytest

from pdgen_core import service
from pdgen_core.spec import spec_from_dict


def _spec(out: str, catalog: str = "s3://svc/catalog/", **over) -> dict:
    d = {"name": "svc", "catalog": {"uri": catalog, "columns": {"sku": "product_id", "title": "product_name",
                                                               "price": "price_usd", "brand": "brand"}},
         "tasks": ["description"], "model": {"source": "pdgen-tiny", "max_model_len": 512},
         "output": {"uri": out}, "mode": "full", "sampling": {"max_tokens": 24},
         "guardrails": {"min_chars": 1, "max_attempts": 2}, "resources": {"batch_size": 16}}
    d.update(over)
    return d


# -- which jobs a service can take (pure) -----------------------------------------------------------

def test_a_service_takes_only_jobs_it_can_serve():
    spec = spec_from_dict(_spec("s3://b/o/"))
    info = {"model": "pdgen-tiny-v1@abc", "max_model_len": 2048, "max_lora_rank": 16, "json": True}
    job = {"max_model_len": 512, "enable_lora": True, "max_lora_rank": 16}
    assert service.mismatch(info, spec, "pdgen-tiny-v1@abc", job) is None
    assert "serves pdgen-tiny-v1@abc" in service.mismatch(info, spec, "smollm2@def", job)
    assert "context (256)" in service.mismatch({**info, "max_model_len": 256}, spec, "pdgen-tiny-v1@abc", job)
    assert "LoRA rank" in service.mismatch({**info, "max_lora_rank": 8}, spec, "pdgen-tiny-v1@abc",
                                           {**job, "max_lora_rank": 64})
    assert "JSON" in service.mismatch({**info, "json": False}, spec, "pdgen-tiny-v1@abc",
                                      {**job, "structured_outputs_config": {}})


def test_service_commands_need_a_cluster_that_outlives_them(monkeypatch):
    from typer.testing import CliRunner

    from pdgen_core.cli import app

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    r = CliRunner().invoke(app, ["service", "status"])
    assert r.exit_code == 2 and "RAY_ADDRESS" in r.output


# -- a real service ------------------------------------------------------------------------------

def _texts(out: str) -> dict[str, dict]:
    from pdgen_core import storage
    from pdgen_core.stages.commit import open_table

    base = storage.resolve(out)
    got = {}
    for kind in ("rejects", "content"):
        t = open_table(base.child(kind, "description"))
        for r in t.to_pyarrow_table().to_pylist() if t else ():
            if kind == "content" or r["stage"] == "guard":
                got[r["sku"]] = {"text": r["text"] if kind == "content" else r["detail"],
                                 "adapter": r.get("adapter"), "kind": kind,
                                 "input_fingerprint": r["input_fingerprint"]}
    return got


@pytest.fixture(scope="module")
def running(tiny_service, s3, tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from pdgen_core.finetune import registry
    from pdgen_core.models.resolve import resolve_model
    from pdgen_core.synth import write_catalog

    s3.create_bucket("svc")
    write_catalog("s3://svc/catalog/", 10, files=1, bad_rows=0)
    path = resolve_model("pdgen-tiny")
    base = AutoModelForCausalLM.from_pretrained(path)
    peft = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a non-zero update, so the adapter changes the outputs
    folder = tmp_path_factory.mktemp("adapter")
    peft.save_pretrained(folder)
    version, _ = registry.publish("s3://svc/lora/", "description", folder,
                                  {"base_model": {"source": "pdgen-tiny"}, "run_id": "test"})
    # the session's service (conftest ``tiny_service``): started once, stopped at the session's end
    return service.status(), version


@pytest.mark.e2e
def test_jobs_reuse_the_service_and_write_what_their_own_actors_would(running, monkeypatch):
    from pdgen_core.pipeline import run_job

    st, version = running
    assert st["status"] == "RUNNING" and st["model"].startswith("pdgen-tiny")
    ref = f"s3://svc/lora/adapters/description/{version}"  # one version for both outputs
    lora = {"source": "pdgen-tiny", "max_model_len": 512, "adapters": {"description": ref}}

    via_service = run_job(spec_from_dict(_spec("s3://svc/lora/", model=lora)))
    assert via_service["engine"]["kind"] == "service"
    monkeypatch.setenv("PDGEN_ENGINE_SERVICE", "off")
    own = run_job(spec_from_dict(_spec("s3://svc/lora-own/", model=lora)))
    assert own["engine"] == {"kind": "actors", "replicas": 1, "why_not_service": "PDGEN_ENGINE_SERVICE=off"}
    monkeypatch.setenv("PDGEN_ENGINE_SERVICE", "auto")
    plain = run_job(spec_from_dict(_spec("s3://svc/plain/")))
    assert plain["engine"]["kind"] == "service"

    a, b, c = _texts("s3://svc/lora/"), _texts("s3://svc/lora-own/"), _texts("s3://svc/plain/")
    assert len(a) == len(b) == len(c) == 10
    # per-row LoRA: every row through the service carries the adapter version, and its text is the
    # text the job's own engine wrote with the same seeds (the row's own sampling parameters)
    assert all((r["adapter"] or "").startswith(f"description/v{version}") for r in a.values() if r["kind"] == "content")
    assert {k: r["text"] for k, r in a.items()} == {k: r["text"] for k, r in b.items()}
    # and without the adapter, through the same engine, the texts differ (the LoRA was applied)
    assert any(a[k]["text"] != c[k]["text"] for k in a)
    assert all(r["adapter"] in ("", None) for r in c.values())
    # the adapter's version is an input: fingerprints differ with it, so a new version regenerates
    assert all(a[k]["input_fingerprint"] != c[k]["input_fingerprint"] for k in a)
    assert all(a[k]["input_fingerprint"] == b[k]["input_fingerprint"] for k in a)
    assert (via_service["counts"]["by_task"]["description"]["planned"]
            == plain["counts"]["by_task"]["description"]["planned"] == 10)

    after = service.status()
    assert after["pid"] == st["pid"]   # one engine, started once, for both jobs
    assert {via_service["run_id"], plain["run_id"]} <= set(after["runs"]) and own["run_id"] not in after["runs"]
    assert after["rows"] >= st["rows"] + 20 and after["batches"] >= st["batches"] + 2
