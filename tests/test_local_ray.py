"""``python -m pdgen_core.tools.local_ray`` (what ``make local-ray`` runs) as a subprocess: a Ray head and
the local S3 started, the real jobs submitted through the Jobs API, their outputs checked,
everything stopped. Asserts the exit code and the summary it prints."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
# local_ray's own budget (it stops a job still running then, and cleans up); a busy laptop may
# need more: PDGEN_LOCAL_RAY_TIMEOUT=1200.
BUDGET_S = int(os.environ.get("PDGEN_LOCAL_RAY_TIMEOUT", "780"))
LIMIT_S = BUDGET_S + 120
# Fewer products than `make local-ray`'s 40: each is a real-model generation on two shared cores,
# and what this test checks (jobs submitted, counts, refresh of CHANGED rows) needs only a dozen.
ROWS = 12


@pytest.mark.timeout(LIMIT_S + 150)
def test_local_ray_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "pdgen_core.tools.local_ray", "--timeout", str(BUDGET_S),
                             "--rows", str(ROWS)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # its `finally` stops the head and the S3 server
        out, _ = proc.communicate(timeout=120)
        (tmp_path / "local-ray.log").write_text(out)
        pytest.fail(f"local_ray still running after {LIMIT_S}s; stopped it:\n{out[-6000:]}")
    (tmp_path / "local-ray.log").write_text(out)

    assert proc.returncode == 0, out[-8000:]
    assert re.search(r"^local-ray: all \d+ checks passed in \d+s$", out, re.M), out[-4000:]
    summary = out[out.index("local-ray summary"):]
    for job in ("generate", "refresh", "finetune"):
        assert re.search(rf"^  job {job} +pdgen-{job}-\S+ +SUCCEEDED ", summary, re.M), summary
    for check in ("generate: counts balance", "generate: content Delta table has rows",
                  "refresh: counts balance", "refresh: regenerated exactly the 2 changed skus",
                  "finetune: adapter version registered", "generate: HTML report builds"):
        assert f"PASS  {check}" in summary, summary
    assert "FAIL" not in summary
    assert "stopped the Ray head and the local S3" in out and "still alive" not in out
