"""``pdgen model upload``: a resolved model folder, and a registry adapter, onto the local S3
server (moto, real HTTP), then read back the way a cluster node reads them (``resolve_model``,
``resolve_adapter_uri``). pdgen-tiny stands in for SmolLM2: the same code path, kilobytes
instead of 540 MB."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from typer.testing import CliRunner

from pdgen_core.cli import app
from pdgen_core.models import upload

runner = CliRunner()


@pytest.fixture
def prefix(s3) -> str:
    # Nodes cache an s3:// model by its URI: a fresh prefix per test keeps the cache honest.
    return f"s3://models/upload-{uuid.uuid4().hex[:8]}"


def test_upload_a_resolved_model_and_read_it_back_as_a_node_would(prefix):
    from pdgen_core.models.resolve import resolve_model

    here = resolve_model("pdgen-tiny")
    r = runner.invoke(app, ["model", "upload", "pdgen-tiny", f"{prefix}/"])
    assert r.exit_code == 0, r.output
    assert f"in a spec: model: {{source: {prefix}/}}" in r.output
    manifest = upload.read_manifest(prefix)
    assert manifest["source"] == "pdgen-tiny" and "config.json" in manifest["files"]
    assert manifest["files"] == {p.relative_to(here).as_posix(): upload.sha256_file(p)
                                 for p in upload.model_files(here)}
    fetched = resolve_model(f"{prefix}/")  # what a cluster node does with model.source
    for rel, sha in manifest["files"].items():
        assert upload.sha256_file(fetched / rel) == sha, rel

    again = runner.invoke(app, ["model", "upload", "pdgen-tiny", prefix])
    assert again.exit_code == 0 and "already there, nothing copied" in again.output


def test_a_different_model_to_a_used_prefix_is_refused(prefix, tmp_path):
    from pdgen_core.models.resolve import resolve_model

    assert runner.invoke(app, ["model", "upload", "pdgen-tiny", prefix]).exit_code == 0
    other = tmp_path / "other"
    shutil.copytree(resolve_model("pdgen-tiny"), other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "pdgen_note": "retrained"}))
    r = runner.invoke(app, ["model", "upload", str(other), prefix])
    assert r.exit_code == 2 and "new prefix" in r.output, r.output
    missing = runner.invoke(app, ["model", "upload", str(tmp_path / "nope"), f"{prefix}-x"])
    assert missing.exit_code == 2 and "no such folder" in missing.output


def test_upload_an_adapter_from_the_registry(prefix, tmp_path):
    from pdgen_core.finetune import registry

    lora = tmp_path / "ckpt"
    lora.mkdir()
    (lora / "adapter_config.json").write_text(json.dumps({"r": 4, "base_model_name_or_path": "pdgen-tiny"}))
    (lora / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    local = tmp_path / "registry"
    v, _ = registry.publish(str(local), "description", lora, {"run_id": "ft-1", "checkpoint": "c1"})
    r = runner.invoke(app, ["model", "upload", f"{local}/adapters/description/{v}", prefix])
    assert r.exit_code == 0, r.output
    assert registry.committed_versions(prefix, "description") == [1]
    assert f"adapters: {{description: {prefix}/adapters/description/1}}" in r.output
    path, version = registry.resolve_adapter_uri(f"{prefix}/adapters/description/1", kind="lora")
    assert version == 1 and (path / "adapter_model.safetensors").read_bytes() == b"\0" * 64
    again = runner.invoke(app, ["model", "upload", f"{local}/adapters/description/{v}", prefix])
    assert again.exit_code == 0 and registry.committed_versions(prefix, "description") == [1]
