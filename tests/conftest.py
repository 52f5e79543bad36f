"""Shared fixtures: one local S3 server (moto, real HTTP) and one in-process Ray per session.

The S3 server starts before Ray so that Ray's workers inherit its endpoint and credentials.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
# Tests keep their own model cache: a pdgen-tiny trained by `make demo` (512 positions) must not
# change what the tests run on.
os.environ["PDGEN_CACHE_DIR"] = os.environ.get("PDGEN_TEST_CACHE_DIR", str(REPO / ".cache" / "pdgen-test"))
os.environ.setdefault("PDGEN_LOG_JSON", "1")
# Fault-scenario figures go to the tree only from `make chaos` (it sets PDGEN_CHAOS_LOG).
os.environ.setdefault("PDGEN_CHAOS_LOG", str(Path(tempfile.gettempdir()) / "pdgen-chaos-tests.jsonl"))
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.pop("RAY_ADDRESS", None)
# Jobs start their own engine actors unless a module asks for the session's generation service
# (the ``tiny_service`` fixture): which engine a test's job used never depends on test order.
os.environ["PDGEN_ENGINE_SERVICE"] = "off"
logging.getLogger("werkzeug").setLevel(logging.WARNING)


def real_data(rel: str) -> Path:
    """A file of ../shared/data/real, or skip the test with the reason."""
    p = REAL / rel
    if not p.exists():
        pytest.skip(f"real data not present: {p} (the shared data folder is absent on this machine)")
    return p


@pytest.fixture(scope="session")
def s3():
    from pdgen_core.testing.s3server import local_s3

    with local_s3(buckets=("catalog", "content", "models")) as srv:
        yield srv


@pytest.fixture(scope="session")
def ray_local(s3):
    import ray

    from pdgen_core.ray_session import init_ray

    init_ray()
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def _session_service(ray_local):
    """One generation service (``pdgen_core.service``) on pdgen-tiny for the session, started when
    a module first asks for it: each in-process pdgen-tiny job of those modules hands it its
    batches instead of starting an engine actor (about 30 s each here: vLLM's import and engine
    start). Its context (1024, pdgen-tiny's own), LoRA and guided JSON serve every such job. Its
    replica reserves no CPU: the jobs it does not serve keep the session's two."""
    from pdgen_core import service
    from pdgen_core.models.resolve import model_identity, resolve_model
    from pdgen_core.spec import spec_from_dict

    spec = spec_from_dict({"name": "suite-service", "catalog": {"uri": "s3://catalog/"},
                           "tasks": ["description", "faq"], "output": {"uri": "s3://content/"},
                           "model": {"source": "pdgen-tiny", "max_model_len": 1024}})
    path = resolve_model("pdgen-tiny")
    assert service.status()["status"] == "NOT_RUNNING"
    st = service.start(spec, path, model_identity(path, spec.model.revision), num_cpus=0)
    yield st
    from ray import serve

    assert service.stop() and service.status()["status"] == "NOT_RUNNING"
    serve.shutdown()


@pytest.fixture(scope="module")
def tiny_service(_session_service):
    """This module's in-process jobs may use the session's generation service
    (``PDGEN_ENGINE_SERVICE=auto``); a job it cannot serve (another model) starts its own actors."""
    os.environ["PDGEN_ENGINE_SERVICE"] = "auto"
    yield _session_service
    os.environ["PDGEN_ENGINE_SERVICE"] = "off"


@pytest.fixture
def bucket(s3, request):
    """A fresh bucket per test: s3://<name>."""
    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40].strip("-")
    s3.create_bucket(name)
    return f"s3://{name}"
