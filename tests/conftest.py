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


@pytest.fixture
def bucket(s3, request):
    """A fresh bucket per test: s3://<name>."""
    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40].strip("-")
    s3.create_bucket(name)
    return f"s3://{name}"
