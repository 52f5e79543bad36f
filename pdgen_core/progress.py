"""Driver-side progress of a run: a rich bar on a terminal, structlog ``progress`` events elsewhere.

A background thread calls ``poll()`` (rows done so far, e.g. rows in the staged Parquet files)
every ``interval_s``, keeps ``[{"t": seconds, "rows": n}]`` samples for the run record, and shows
rows done/total, rows/s and the ETA::

    with Progress(total, poll, run_id=run_id, task="description") as p:
        ...                                  # the work
    record["progress"] = p.samples

Off a terminal (a Ray job's driver, CI) it logs ``progress`` events with ``run_id``, ``task``,
``rows``, ``total``, ``rows_per_s`` and ``eta_s`` every ``log_every_s`` and once at the end.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

from pdgen_core.log import get_logger

RATE_WINDOW_S = 30.0  # rows/s over the recent past: the engine's start is not throughput
MAX_SAMPLES = 240  # the run record stays small on long runs: older samples are thinned


class Progress:
    def __init__(self, total: int, poll: Callable[[], int], *, run_id: str, task: str = "all",
                 interval_s: float = 2.0, log_every_s: float = 15.0, bar: bool | None = None,
                 logger: Any = None, clock: Callable[[], float] = time.monotonic,
                 max_samples: int = MAX_SAMPLES):
        if max_samples < 4:
            raise ValueError(f"max_samples={max_samples}: keep at least 4 samples")
        self.total = max(0, int(total))
        self.poll = poll
        self.run_id, self.task = run_id, task
        self.interval_s, self.log_every_s = interval_s, log_every_s
        self.bar = sys.stderr.isatty() if bar is None else bar
        if logger is None:
            logger = get_logger()
        self.log = logger.bind(run_id=run_id, task=task)
        self.clock = clock
        self.max_samples = max_samples
        self.samples: list[dict[str, float | int]] = []
        self.rows = 0
        self._stride = 1  # record every n-th tick once thinned
        self._ticks = 0
        self._t0 = 0.0
        self._last_log: float | None = None
        self._poll_failed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rich = None
        self._bar_id = None

    # -- figures ---------------------------------------------------------------------------------
    def rate(self) -> float:
        """Rows per second over the last ``RATE_WINDOW_S`` (or since the start)."""
        if len(self.samples) < 2:
            return 0.0
        last = self.samples[-1]
        first = next((s for s in self.samples if last["t"] - s["t"] <= RATE_WINDOW_S), self.samples[0])
        if first is last:
            first = self.samples[-2]
        dt = last["t"] - first["t"]
        return max(0.0, (last["rows"] - first["rows"]) / dt) if dt > 0 else 0.0

    def eta_s(self) -> float | None:
        left = self.total - self.rows
        if left <= 0:
            return 0.0
        r = self.rate()
        return left / r if r > 0 else None

    # -- the thread ------------------------------------------------------------------------------
    def _sample(self, force: bool = False) -> None:
        try:
            self.rows = int(self.poll())
        except Exception as exc:  # a slow or flaky store must not end the job: keep the last count
            if not self._poll_failed:
                self.log.warning("progress.poll_failed", error=f"{type(exc).__name__}: {exc}")
                self._poll_failed = True
        t = round(self.clock() - self._t0, 3)
        self._ticks += 1
        if force or self._ticks % self._stride == 0:
            if self.samples and self.samples[-1]["t"] == t:
                self.samples[-1]["rows"] = self.rows
            else:
                self.samples.append({"t": t, "rows": self.rows})
            if len(self.samples) > self.max_samples:
                # Keep every other sample (and the last); sample half as often from now on.
                self.samples = self.samples[:-1:2] + [self.samples[-1]]
                self._stride *= 2
        self._show(t, force)

    def _show(self, t: float, force: bool) -> None:
        rate, eta = self.rate(), self.eta_s()
        if self._rich is not None:
            self._rich.update(self._bar_id, completed=min(self.rows, self.total) if self.total else 0,
                              rate=f"{rate:,.1f}", eta="-" if eta is None else _hms(eta))
        elif force or self._last_log is None or t - self._last_log >= self.log_every_s:
            self._last_log = t
            self.log.info("progress", rows=self.rows, total=self.total, rows_per_s=round(rate, 2),
                          eta_s=None if eta is None else round(eta, 1), elapsed_s=t)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> "Progress":
        self._t0 = self.clock()
        if self.bar:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("rows  {task.fields[rate]} rows/s  ETA {task.fields[eta]}"),
                console=Console(stderr=True), transient=False,
            )
            self._rich.start()
            self._bar_id = self._rich.add_task(self.task, total=self.total or None, rate="0.0", eta="-")
        self._sample(force=True)
        self._thread = threading.Thread(target=self._loop, name=f"pdgen-progress-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(force=True)
        if self._rich is not None:
            self._rich.stop()
            # The bar is gone with the terminal's scrollback; the summary is an event everywhere.
            self.log.info("progress", rows=self.rows, total=self.total, rows_per_s=round(self.rate(), 2),
                          eta_s=0.0 if self.rows >= self.total else None, elapsed_s=self.samples[-1]["t"])


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
