"""Ray metrics for generation: rows by outcome, rejects by reason, tokens, per-task latency.

``record_batch(table)`` is called by a Ray Data UDF on each guard-stage output batch and returns
the batch unchanged (so ``ds.map_batches(record_batch, batch_format="pyarrow")`` also works).
The metric objects are made on first use in each worker process: ``ray.util.metrics`` objects
register with the process's core worker and cannot be pickled into a UDF.

Ray's metrics agent on every node serves them in Prometheus text format at
``http://<node>:<metrics-export-port>/metrics`` (``ray start --metrics-export-port``; Ray writes
the scrape targets of the whole cluster to ``<temp-dir>/prom_metrics_service_discovery.json``).
Prometheus names get Ray's ``ray_`` prefix, and counters a ``_total`` suffix::

    ray_pdgen_rows_total{task, status}                 accepted | retry | rejected
    ray_pdgen_rejects_total{task, reason}              final rejects only (status rejected)
    ray_pdgen_tokens_in_total{task}, ray_pdgen_tokens_out_total{task}
    ray_pdgen_generation_latency_seconds_bucket{task, le}  (+ _sum, _count): per request, from
                                                       the engine's ``time_taken_llm``
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

PREFIX = "pdgen_"
# Seconds per request on CPU engines (tiny models, busy laptops) up to large models on GPUs.
LATENCY_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
REQUIRED = ("task", "status")
UNKNOWN = "unknown"  # tag value for a null task/status/reason: counted, never dropped


@dataclass(frozen=True)
class Metrics:
    rows: Any
    rejects: Any
    tokens_in: Any
    tokens_out: Any
    latency: Any


_lock = threading.Lock()
_metrics: Metrics | None = None
_pid: int | None = None


def get_metrics() -> Metrics:
    """This process's metric objects, made on first use (and again in a forked child)."""
    global _metrics, _pid
    with _lock:
        if _metrics is None or _pid != os.getpid():
            from ray.util.metrics import Counter, Histogram

            _metrics = Metrics(
                rows=Counter(PREFIX + "rows", "Generated rows by outcome.", tag_keys=("task", "status")),
                rejects=Counter(PREFIX + "rejects", "Rejected rows by reason.", tag_keys=("task", "reason")),
                tokens_in=Counter(PREFIX + "tokens_in", "Prompt tokens.", tag_keys=("task",)),
                tokens_out=Counter(PREFIX + "tokens_out", "Generated tokens.", tag_keys=("task",)),
                latency=Histogram(PREFIX + "generation_latency_seconds",
                                  "Engine time per request (time_taken_llm).",
                                  boundaries=LATENCY_BOUNDARIES, tag_keys=("task",)),
            )
            _pid = os.getpid()
        return _metrics


def _str_counts(table: pa.Table, keys: list[str]) -> list[tuple[tuple[str, ...], int]]:
    """(tag values, row count) per group; nulls become ``unknown``."""
    if table.num_rows == 0:
        return []
    cols = [pc.fill_null(pc.cast(table.column(k), pa.string()), UNKNOWN) for k in keys]
    grouped = pa.table(cols, names=keys).group_by(keys).aggregate([([], "count_all")])
    values = [grouped.column(k).to_pylist() for k in keys]
    return list(zip(zip(*values), grouped.column("count_all").to_pylist()))


def _sums(table: pa.Table, column: str) -> list[tuple[str, float]]:
    t = pa.table({"task": pc.fill_null(pc.cast(table.column("task"), pa.string()), UNKNOWN),
                  "v": pc.fill_null(table.column(column), 0)})
    g = t.group_by("task").aggregate([("v", "sum")])
    return list(zip(g.column("task").to_pylist(), g.column("v_sum").to_pylist()))


def record_batch(table: pa.Table) -> pa.Table:
    """Count one guard-stage output batch into this process's metrics; return it unchanged.

    Needs ``task`` and ``status``; ``reason``, ``tokens_in``, ``tokens_out`` and
    ``time_taken_llm`` are used when present (a latency of -1, Ray's value for a failed request,
    is skipped).
    """
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ValueError(f"record_batch: batch lacks column(s) {missing}; "
                         f"call it on the guard stage's output (columns: {table.column_names})")
    if table.num_rows == 0:
        return table
    m = get_metrics()
    for (task, status), n in _str_counts(table, ["task", "status"]):
        m.rows.inc(n, tags={"task": task, "status": status})
    if "reason" in table.column_names:
        rejected = table.filter(pc.equal(table.column("status"), "rejected"))
        for (task, reason), n in _str_counts(rejected, ["task", "reason"]):
            m.rejects.inc(n, tags={"task": task, "reason": reason})
    for column, counter in (("tokens_in", m.tokens_in), ("tokens_out", m.tokens_out)):
        if column in table.column_names:
            for task, total in _sums(table, column):
                if total:
                    counter.inc(total, tags={"task": task})
    if "time_taken_llm" in table.column_names:
        tasks = pc.fill_null(pc.cast(table.column("task"), pa.string()), UNKNOWN).to_pylist()
        for task, s in zip(tasks, table.column("time_taken_llm").to_pylist()):
            if s is not None and s >= 0:
                m.latency.observe(float(s), tags={"task": task})
    return table
