"""pdgen_core.metrics and pdgen_core.progress.

Metrics: what ``record_batch`` counts (with recording fakes), then the real thing: a Ray task calls
it and the values are read back from the node's Prometheus endpoint (the metrics export port).
Progress: a fake poll function and a fake clock drive the reporter; samples and events are checked.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.request
import uuid

import pyarrow as pa
import pytest
import structlog

from pdgen_core import metrics
from pdgen_core.progress import Progress


def _batch(task: str = "description") -> pa.Table:
    return pa.table({
        "task": [task, task, task, "blurb", task],
        "status": ["accepted", "rejected", "retry", "accepted", "rejected"],
        "reason": [None, "too_short", "too_short", None, None],
        "tokens_in": [10, 20, 30, 5, None],
        "tokens_out": [1, 2, 3, 4, 0],
        "time_taken_llm": [0.2, 0.3, -1.0, 1.5, None],
    })


# --- metrics: what is counted -------------------------------------------------------------------


class _Rec:
    def __init__(self):
        self.calls: list[tuple[float, dict]] = []

    def inc(self, value, tags):
        self.calls.append((value, tags))

    observe = inc


@pytest.fixture
def fake_metrics(monkeypatch):
    m = metrics.Metrics(*(_Rec() for _ in range(5)))
    monkeypatch.setattr(metrics, "_metrics", m)
    monkeypatch.setattr(metrics, "_pid", os.getpid())
    return m


def test_record_batch_counts_outcomes_reasons_tokens_latency(fake_metrics):
    b = _batch()
    assert metrics.record_batch(b) is b  # usable as a pass-through map_batches UDF
    m = fake_metrics
    assert sorted((t["task"], t["status"], v) for v, t in m.rows.calls) == [
        ("blurb", "accepted", 1), ("description", "accepted", 1), ("description", "rejected", 2),
        ("description", "retry", 1)]
    # only final rejects; a null reason is counted as "unknown", never dropped
    assert sorted((t["reason"], v) for v, t in m.rejects.calls) == [("too_short", 1), ("unknown", 1)]
    assert sorted((t["task"], v) for v, t in m.tokens_in.calls) == [("blurb", 5), ("description", 60)]
    assert sorted((t["task"], v) for v, t in m.tokens_out.calls) == [("blurb", 4), ("description", 6)]
    # -1 (Ray's value for a failed request) and nulls are skipped
    assert sorted((t["task"], v) for v, t in m.latency.calls) == [("blurb", 1.5), ("description", 0.2),
                                                                  ("description", 0.3)]


def test_record_batch_optional_columns_empty_and_missing(fake_metrics):
    metrics.record_batch(pa.table({"task": ["faq"], "status": ["accepted"]}))
    assert [t for _, t in fake_metrics.rows.calls] == [{"task": "faq", "status": "accepted"}]
    assert fake_metrics.tokens_in.calls == fake_metrics.latency.calls == []
    metrics.record_batch(_batch().slice(0, 0))
    assert len(fake_metrics.rows.calls) == 1
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['status'\]"):
        metrics.record_batch(pa.table({"task": ["faq"]}))


def test_metric_objects_have_names_and_tags():
    m = metrics.get_metrics()  # no Ray needed to make them (they record nothing outside Ray)
    assert metrics.get_metrics() is m  # once per process
    info = {x.info["name"]: x.info["tag_keys"] for x in (m.rows, m.rejects, m.tokens_in, m.tokens_out, m.latency)}
    assert info == {"pdgen_rows": ("task", "status"), "pdgen_rejects": ("task", "reason"),
                    "pdgen_tokens_in": ("task",), "pdgen_tokens_out": ("task",),
                    "pdgen_generation_latency_seconds": ("task",)}
    assert m.latency.info["boundaries"] == metrics.LATENCY_BOUNDARIES


# --- metrics: a real Ray task, read back from the Prometheus endpoint ---------------------------


@pytest.fixture(scope="module")
def ray_metrics_port():
    """The metrics export port of this process's Ray node (the session's, or a small own one)."""
    import ray

    own = not ray.is_initialized()
    saved = os.environ.get("RAY_metrics_report_interval_ms")
    if own:
        os.environ["RAY_metrics_report_interval_ms"] = "1000"  # export every second, not every 10
        ray.init(num_cpus=1, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        yield ray._private.worker.global_worker.node.metrics_export_port
    finally:
        if own:
            ray.shutdown()
            if saved is None:
                os.environ.pop("RAY_metrics_report_interval_ms", None)
            else:
                os.environ["RAY_metrics_report_interval_ms"] = saved


def _scrape(port: int, task: str, want: int, timeout_s: float = 90) -> dict[str, float]:
    """``metric{labels}`` -> value for the lines of ``task``, once ``want`` of them are there."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        got = {}
        for line in text.splitlines():
            if line.startswith("ray_pdgen_") and f'task="{task}"' in line:
                name, labels, value = re.match(r"(\w+)\{(.*)\} (\S+)$", line).groups()
                keep = sorted(kv for kv in re.findall(r'(\w+)="([^"]*)"', labels)
                              if kv[0] in ("status", "reason", "le"))
                got[name + "".join(f"[{k}={v}]" for k, v in keep)] = float(value)
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(1)


def test_record_batch_in_a_ray_task_reaches_prometheus(ray_metrics_port):
    import ray

    task = f"mtest-{uuid.uuid4().hex[:8]}"  # unique: a shared session may hold other runs' series

    @ray.remote(num_cpus=1)
    def guard_stage_udf(t: pa.Table) -> int:
        from pdgen_core.metrics import record_batch

        record_batch(t)
        record_batch(t)
        return os.getpid()

    b = _batch(task).filter(pa.compute.not_equal(pa.compute.field("task"), "blurb"))
    assert ray.get(guard_stage_udf.remote(b)) != os.getpid()
    got = _scrape(ray_metrics_port, task, want=22)  # 3 + 2 + 2 + 13 buckets + count + sum
    assert got["ray_pdgen_rows_total[status=accepted]"] == 2
    assert got["ray_pdgen_rows_total[status=rejected]"] == 4
    assert got["ray_pdgen_rows_total[status=retry]"] == 2
    assert got["ray_pdgen_rejects_total[reason=too_short]"] == 2
    assert got["ray_pdgen_rejects_total[reason=unknown]"] == 2
    assert got["ray_pdgen_tokens_in_total"] == 120 and got["ray_pdgen_tokens_out_total"] == 12
    assert got["ray_pdgen_generation_latency_seconds_count"] == 4
    # Ray exports the sum from bucket midpoints (open_telemetry_metric_recorder): within the buckets
    assert 2 * 0.1 + 2 * 0.25 <= got["ray_pdgen_generation_latency_seconds_sum"] <= 2 * 0.25 + 2 * 0.5
    assert got["ray_pdgen_generation_latency_seconds_bucket[le=0.25]"] == 2
    assert got["ray_pdgen_generation_latency_seconds_bucket[le=0.5]"] == 4


# --- progress -----------------------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _capture():
    cap = structlog.testing.LogCapture()
    return cap, structlog.wrap_logger(None, processors=[cap])


def test_progress_samples_rate_eta_and_events():
    clock, rows = _Clock(), iter([0, 10, 30, 60, 90, 100])
    cap, logger = _capture()
    p = Progress(100, lambda: next(rows), run_id="r1", task="description", bar=False,
                 logger=logger, clock=clock, interval_s=3600, log_every_s=10)
    with p:  # the thread sleeps an hour: ticks are driven by hand with a fake clock
        for _ in range(4):
            clock.t += 5
            p._sample()
        assert p.rows == 90 and p.rate() == pytest.approx(90 / 20)
        assert p.eta_s() == pytest.approx(10 / (90 / 20))
        clock.t += 2
    assert p.samples == [{"t": 0.0, "rows": 0}, {"t": 5.0, "rows": 10}, {"t": 10.0, "rows": 30},
                         {"t": 15.0, "rows": 60}, {"t": 20.0, "rows": 90}, {"t": 22.0, "rows": 100}]
    events = [e for e in cap.entries if e["event"] == "progress"]
    assert all(e["run_id"] == "r1" and e["task"] == "description" for e in events)
    # first tick, every log_every_s (t=10, t=20), and the end
    assert [e["rows"] for e in events] == [0, 30, 90, 100]
    assert events[-1]["eta_s"] == 0.0 and events[-1]["total"] == 100
    assert events[1]["rows_per_s"] == 3.0 and events[1]["eta_s"] == pytest.approx(70 / 3, abs=0.1)


def test_progress_thread_polls_in_the_background():
    done = {"n": 0}
    seen = threading.Event()

    def poll() -> int:
        done["n"] += 7
        if done["n"] >= 28:
            seen.set()
        return done["n"]

    cap, logger = _capture()
    with Progress(50, poll, run_id="r2", bar=False, logger=logger, interval_s=0.02, log_every_s=0) as p:
        assert seen.wait(10)
    assert len(p.samples) >= 4 and p.samples[0]["t"] == 0.0
    assert [s["rows"] for s in p.samples] == sorted(s["rows"] for s in p.samples)
    assert p.samples[-1]["rows"] == p.rows
    assert all(e["task"] == "all" for e in cap.entries)


def test_progress_thins_samples_and_survives_poll_errors():
    clock, n = _Clock(), {"v": 0}

    def poll() -> int:
        n["v"] += 1
        if n["v"] == 3:
            raise OSError("S3 said 503")
        return n["v"]

    cap, logger = _capture()
    p = Progress(1000, poll, run_id="r3", bar=False, logger=logger, clock=clock, interval_s=3600,
                 log_every_s=1e9, max_samples=8)
    with p:
        for _ in range(40):
            clock.t += 1
            p._sample()
    assert len(p.samples) <= 8 and p.samples[0] == {"t": 0.0, "rows": 1}
    assert p.samples[-1] == {"t": 40.0, "rows": 42}
    assert [s["t"] for s in p.samples] == sorted(s["t"] for s in p.samples)
    failed = [e for e in cap.entries if e["event"] == "progress.poll_failed"]
    assert len(failed) == 1 and "503" in failed[0]["error"]


def test_progress_bar_on_a_terminal(capsys):
    clock, rows = _Clock(), iter([0, 4, 8])
    cap, logger = _capture()
    with Progress(8, lambda: next(rows), run_id="r4", task="blurb", bar=True, logger=logger,
                  clock=clock, interval_s=3600) as p:
        clock.t += 2
        p._sample()
        clock.t += 2
    assert p.samples[-1] == {"t": 4.0, "rows": 8}
    err = capsys.readouterr().err
    assert "blurb" in err and "8/8" in err and "rows/s" in err
    # on a terminal only the closing summary is an event
    assert [e["rows"] for e in cap.entries if e["event"] == "progress"] == [8]


def test_progress_counts_what_the_engines_told_the_tally_before_any_file_is_staged(ray_local, tmp_path):
    """The bar's numerator while an engine call runs: the ``Tally`` actor's count (plus a resumed
    run's items), or the staged files' count when that is more; the staged count alone once the
    tally is gone."""
    import ray

    from pdgen_core import storage
    from pdgen_core.generation import _start_tally, _stop, items_done

    loc = storage.resolve(str(tmp_path / "generated"))
    tally = _start_tally()
    try:
        assert items_done(loc, tally, resumed=0) == 0
        tally.add.remote(3)
        tally.add.remote(4)
        assert ray.get(tally.count.remote()) == 7
        assert items_done(loc, tally, resumed=5) == 12
    finally:
        _stop(tally)
    assert items_done(loc, None, resumed=0) == 0     # no tally: the staged files, here none

    class Dead:  # a tally whose actor died (ray.kill lands asynchronously: not waited for here)
        class count:
            @staticmethod
            def remote():
                raise RuntimeError("actor died")
    assert items_done(loc, Dead(), resumed=5) == 0
