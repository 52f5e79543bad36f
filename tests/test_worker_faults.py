"""Worker faults (``make chaos``): a vLLM actor killed mid-run, and an engine that cannot start.

- SIGKILL to the engine actor's process while it generates: Ray Data replaces the actor and
  retries its tasks; the run completes and every valid row is committed exactly once.
- With ``resources.max_engine_restarts: 0`` the same kill fails the job with ``EngineError``:
  a dying engine is not restarted forever.
- A model vLLM's CPU backend refuses (head_dim 16: "Unsupported CPU attention configuration")
  fails the job at once with ``EngineError``, not after endless actor restarts.

The last test prints the chaos figures table (``pdgen_core.testing.chaos``) at the end of ``make chaos``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pdgen_core import storage
from pdgen_core.testing import chaos
from pdgen_core.spec import spec_from_dict
from pdgen_core.synth import make_catalog

pytestmark = pytest.mark.chaos

COLUMNS = {"sku": "product_id", "title": "product_name", "price": "price_usd", "brand": "brand",
           "category": "category", "color": "color"}


def spec_for(catalog: str, out: str, **resources) -> dict:
    return {"name": "worker-faults", "catalog": {"uri": catalog, "columns": COLUMNS},
            "tasks": ["description"], "model": {"source": "pdgen-tiny"}, "output": {"uri": out}, "mode": "full",
            "sampling": {"max_tokens": 32}, "guardrails": {"min_chars": 1, "max_attempts": 1},
            "resources": {"batch_size": 8, "max_concurrent_batches": 1, **resources}}


def write_catalog(s3, bucket: str, rows: int, bad: int = 4):
    s3.create_bucket(bucket)
    t = make_catalog(rows, seed=11, bad_rows=bad)
    loc = storage.resolve(f"s3://{bucket}/catalog/c.parquet")
    pq.write_table(t, loc.path, filesystem=loc.fs)
    return t, loc.uri


def engine_actors() -> list:
    import ray
    from ray.util.state import list_actors

    # This process's cluster: other Ray instances on the machine make address=None ambiguous.
    gcs = ray.get_runtime_context().gcs_address
    return [a for a in list_actors(address=gcs, filters=[("state", "=", "ALIVE")], limit=1000)
            if "EngineActor" in (a.class_name or "") + (a.repr_name or "")]


class Killer(threading.Thread):
    """SIGKILLs the engine actor's process ``delay_s`` after it is ALIVE (its constructor, the
    engine start, has finished), ``kills`` times; then keeps watching, to count the processes that
    replaced it: a replacement shows that the run still needed an engine, i.e. the kill was
    mid-run. (Staged files are no signal: Ray Data's writer buffers rows into few files.)"""

    def __init__(self, delay_s: float = 3.0, kills: int = 1, timeout: float = 900):
        super().__init__(daemon=True)
        self.delay_s, self.kills, self.timeout = delay_s, kills, timeout
        self.killed: list[int] = []
        self.pids: set[int] = set()
        self.error: str | None = None
        self.done = threading.Event()

    @property
    def replacements(self) -> int:
        return len(self.pids - set(self.killed))

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        alive_since: dict[int, float] = {}
        try:
            while not self.done.is_set() and time.monotonic() < deadline:
                for a in engine_actors():
                    if a.pid:
                        self.pids.add(a.pid)
                        alive_since.setdefault(a.pid, time.monotonic())
                ready = [p for p, t in alive_since.items()
                         if p not in self.killed and time.monotonic() - t >= self.delay_s]
                if ready and len(self.killed) < self.kills:
                    os.kill(ready[0], signal.SIGKILL)
                    self.killed.append(ready[0])
                time.sleep(0.5)
        except Exception as exc:  # reported by the test, not swallowed
            self.error = f"{type(exc).__name__}: {exc}"


def run_with_kills(spec: dict, run_id: str, kills: int = 1, delay_s: float = 3.0):
    from pdgen_core.pipeline import run_job

    s = spec_from_dict(spec)
    killer = Killer(delay_s=delay_s, kills=kills)
    killer.start()
    t0 = time.monotonic()
    try:
        return run_job(s, run_id=run_id), killer, time.monotonic() - t0
    except Exception as exc:
        exc.killer = killer  # type: ignore[attr-defined]
        exc.wall = time.monotonic() - t0  # type: ignore[attr-defined]
        raise
    finally:
        killer.done.set()
        killer.join(timeout=30)


def test_sigkill_engine_actor_mid_run_loses_and_duplicates_nothing(ray_local, s3):
    # Enough rows, and the kill 1 s after the engine is up, that it dies with rows in flight
    # (160 rows with a 3 s delay once finished first: the kill then found an idle actor).
    table, cat = write_catalog(s3, "worker-kill", 400)
    out = "s3://worker-kill/out/"
    rec, killer, wall = run_with_kills(spec_for(cat, out), "kill-1", delay_s=1.0)
    assert killer.error is None, killer.error
    assert len(killer.killed) == 1, "the actor was never killed: the run ended too soon"
    assert killer.replacements >= 1, "no engine replaced the killed one: the kill was not mid-run"
    a = chaos.audit(out, "description", rec, chaos.expected_keys(table, COLUMNS))
    chaos.record("worker: SIGKILL vLLM actor mid-run", rows=a.rows, lost=a.lost,
                 duplicated=a.duplicated, result="ok" if a.ok else "; ".join(a.problems),
                 wall_s=wall, faults={"sigkill": len(killer.killed)},
                 replacement_engines=killer.replacements)
    assert a.ok, (a, rec["counts"])
    assert a.committed + a.rejected == rec["counts"]["valid"]


def test_engine_deaths_beyond_the_bound_fail_the_job(ray_local, s3):
    from pdgen_core.stages.generate import EngineError

    # Enough rows, and the kill 1 s after the engine is up, that the run is still generating
    # (80 rows with a 3 s delay once finished first, after the engine got faster).
    table, cat = write_catalog(s3, "worker-bound", 200)
    out = "s3://worker-bound/out/"
    with pytest.raises(EngineError) as ei:
        run_with_kills(spec_for(cat, out, max_engine_restarts=0), "bound-1", delay_s=1.0)
    killer, wall = ei.value.killer, ei.value.wall
    assert killer.killed, killer.error
    msg = str(ei.value)
    assert "generation failed" in msg and "vLLM engine" in msg
    assert not storage.exists(storage.resolve(out).child("runs", "bound-1.json"))
    assert storage.list_files(storage.resolve(out).child("content"), hidden=True) == []
    chaos.record("worker: engine deaths beyond max_engine_restarts fail the job", rows=0,
                 result="ok", wall_s=wall, faults={"sigkill": len(killer.killed)})


def head_dim_16_model(tmp_path: Path) -> Path:
    """The tiny model with 8 heads of 16 dimensions: same weights' shapes, refused by vLLM's CPU
    attention ("Unsupported CPU attention configuration")."""
    from pdgen_core.models.resolve import resolve_model

    src = resolve_model("pdgen-tiny")
    dst = tmp_path / "head16"
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(num_attention_heads=8, num_key_value_heads=8, head_dim=16)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    return dst


def test_engine_that_cannot_start_fails_at_once(ray_local, s3, tmp_path):
    from pdgen_core.pipeline import run_job
    from pdgen_core.stages.generate import EngineError

    table, cat = write_catalog(s3, "worker-dead", 20)
    out = "s3://worker-dead/out/"
    spec = spec_for(cat, out)
    spec["model"] = {"source": str(head_dim_16_model(tmp_path))}
    restarts: list[int] = []
    stop = threading.Event()

    def watch():  # how often Ray started an engine actor: bounded, not forever
        seen = set()
        while not stop.is_set():
            try:
                for a in engine_actors():
                    seen.add(a.actor_id)
            except Exception:
                pass
            restarts[:] = [len(seen)]
            time.sleep(1)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(EngineError) as ei:
            run_job(spec_from_dict(spec), run_id="dead-1")
    finally:
        stop.set()
        w.join(timeout=5)
    wall = time.monotonic() - t0
    msg = str(ei.value)
    assert "The vLLM engine died or could not start" in msg
    assert not storage.exists(storage.resolve(out).child("runs", "dead-1.json"))
    chaos.record("worker: engine cannot start (head_dim 16) fails at once", rows=0, result="ok",
                 wall_s=wall, faults={"engine_actors_started": restarts[0] if restarts else 0},
                 message=msg[-1500:])
    assert wall < 600, wall


def test_print_chaos_figures(capsys):
    """Last in ``make chaos``: the figures table, printed past pytest's capture."""
    with capsys.disabled():
        print("\n\nchaos figures (latest result per scenario, " + str(chaos.log_path()) + "):")
        print(chaos.summary())
